"""The real CIFAR-10 JPEG archive (../shared/data or $DIRACKIT_DATA): decoded once into a temporary cache."""
from __future__ import annotations

import time

import pytest
import torch

from dirackit.data import GpuLoader, load_cifar

SHA256 = "d9e151194ab2f33119d9345e770e56d47dfb697e79da456ca104245f7b8682a9"  # shared/data/README.md
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.mark.slow
def test_real_cifar10_archive(real_archive):
    data = load_cifar(real_archive)
    start = time.perf_counter()
    again = load_cifar(real_archive)
    warm = time.perf_counter() - start
    assert warm < 1.0, f"cached load took {warm:.2f} s"
    assert torch.equal(again.train_images, data.train_images)

    if real_archive.name == "cifar10-jpeg.tar.xz":
        assert data.sha256 == SHA256
    assert data.classes == CLASSES
    assert data.train_images.shape == (50000, 32, 32, 3) and data.test_images.shape == (10000, 32, 32, 3)
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    # Statistics quoted in shared/data/README.md (0-255 scale).
    assert torch.allclose(torch.tensor(data.mean) * 255, torch.tensor([125.27, 122.93, 113.86]), atol=0.01)
    assert torch.allclose(torch.tensor(data.std) * 255, torch.tensor([62.5, 61.9, 66.5]), atol=0.1)

    sub = data.subset(10, 2)
    x, y = next(iter(GpuLoader(sub.train_images, sub.train_labels, batch_size=100, mean=data.mean, std=data.std,
                               train=True)))
    assert x.shape == (100, 3, 32, 32) and abs(float(x.mean())) < 0.5
