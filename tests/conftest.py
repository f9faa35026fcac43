"""Shared fixtures: random BatchNorm statistics (fresh BNs are near-identity and hide fold bugs) and
small synthetic CIFAR-shaped data built in memory; the browser tests run last."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dirackit.data import CifarData


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def _synthetic_data(num_classes: int = 4, train_per_class: int = 16, test_per_class: int = 4,
                   seed: int = 0) -> CifarData:
    """Random uint8 images whose class shifts the mean colour, so a small net can learn something."""
    g = torch.Generator().manual_seed(seed)

    def split(per_class: int):
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        noise = torch.randint(0, 120, (len(labels), 32, 32, 3), generator=g)
        shift = (labels * (130 // max(1, num_classes - 1)))[:, None, None, None]
        return (noise + shift).clamp(0, 255).to(torch.uint8), labels

    train_x, train_y = split(train_per_class)
    test_x, test_y = split(test_per_class)
    return CifarData(train_x, train_y, test_x, test_y, classes=tuple(f"c{i}" for i in range(num_classes)),
                     source="synthetic", sha256="0" * 64, mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25))


@pytest.fixture
def randomize_bn():
    """``randomize_bn(model, seed=0)``: every BatchNorm gets random running stats, weight and bias."""
    return _randomize_bn


@pytest.fixture
def make_data():
    """``make_data(num_classes=4, train_per_class=16, test_per_class=4, seed=0)`` -> CifarData."""
    return _synthetic_data


@pytest.fixture
def tiny_data() -> CifarData:
    return _synthetic_data()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: they cost the most wall time per check, and the course-site test reads the
    course that the notebook run (tests/test_notebooks.py) builds earlier in the same session."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)  # stable: order kept otherwise
