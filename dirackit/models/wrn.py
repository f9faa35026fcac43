"""Wide Residual Networks and the thin-deep pre-activation ResNet they are compared with.

WRN-d-k: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146).
Pre-activation ResNet-(9n+2): He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016.
Both are the same CIFAR trunk (3x3 stem of 16, three stages at 32/16/8 pixels, BN-ReLU, global
average pool, linear head) with a different pre-activation block.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register
from .depth import basic_blocks, bottleneck_blocks
from .init import reference_init

__all__ = ["PreActBasicBlock", "PreActBottleneck", "CifarResNet", "wrn", "preresnet"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class PreActBlock(nn.Module):
    """x -> branch(BN-ReLU(x)) + shortcut.

    The shortcut is the raw ``x`` when the shape is kept, else a 1x1 conv of the *pre-activated*
    input, as in both WRN reference implementations. The branch is an ``nn.Sequential`` so that
    ``dirackit.fold`` can fuse each conv with the BatchNorm right after it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, branch: nn.Sequential):
        super().__init__()
        self.preact = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.branch = branch
        reshape = in_channels != out_channels or stride != 1
        self.shortcut = conv1x1(in_channels, out_channels, stride) if reshape else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.preact(x)
        return self.branch(a) + (x if self.shortcut is None else self.shortcut(a))


class PreActBasicBlock(PreActBlock):
    """WRN block B(3,3): conv3x3 - BN - ReLU - dropout - conv3x3 (dropout between the convs, p=0.3
    in the paper's "-dropout" results)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        layers = [conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels),
                  nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(conv3x3(out_channels, out_channels))
        super().__init__(in_channels, out_channels, stride, nn.Sequential(*layers))


class PreActBottleneck(PreActBlock):
    """Pre-activation bottleneck: 1x1 (out/4) - 3x3 (out/4, strided) - 1x1 (out), BN-ReLU between."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        mid = out_channels // 4
        branch = nn.Sequential(
            conv1x1(in_channels, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            conv3x3(mid, mid, stride), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            conv1x1(mid, out_channels))
        super().__init__(in_channels, out_channels, stride, branch)


class CifarResNet(nn.Module):
    """Stem conv 3->16, three stages of ``blocks_per_stage`` blocks (stride 2 entering stages 2
    and 3), then BN-ReLU, global average pool and a linear head."""

    def __init__(self, make_block, blocks_per_stage: int, widths: tuple[int, int, int],
                 num_classes: int = 10):
        super().__init__()
        self.stem = conv3x3(3, 16)
        stages, in_channels = [], 16
        for i, width in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(make_block(in_channels, width, stride))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head_act = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.fc = nn.Linear(in_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference init (see :func:`reference_init`)."""
        reference_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_act(self.stages(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def _check_positive(what: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")


@register("wrn-{depth}-{width}", paper="Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016",
          recipe="wrn", examples=("wrn-16-4", "wrn-16-8", "wrn-28-10", "wrn-40-4", "wrn-10-1"),
          params={"wrn-28-10": 36_479_194, "wrn-40-4": 8_949_210, "wrn-16-8": 10_961_370,
                  "wrn-16-4": 2_748_890, "wrn-40-1": 563_930, "wrn-52-1": 758_362})
def wrn(depth: int, width: int, *, num_classes: int = 10, dropout: float = 0.0) -> CifarResNet:
    """WRN-depth-width: (depth-4)/6 basic blocks per stage at widths 16k, 32k, 64k."""
    n = basic_blocks(depth, "WRN")
    _check_positive("WRN width k", width)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return CifarResNet(lambda i, o, s: PreActBasicBlock(i, o, s, dropout), n,
                       (16 * width, 32 * width, 64 * width), num_classes)


@register("preresnet-{depth}", paper="He et al., Identity Mappings in Deep Residual Networks, ECCV 2016",
          recipe="preresnet", examples=("preresnet-164", "preresnet-29"))
def preresnet(depth: int, *, num_classes: int = 10) -> CifarResNet:
    """Pre-activation bottleneck ResNet-depth: (depth-2)/9 bottlenecks per stage, outputs 64/128/256."""
    return CifarResNet(PreActBottleneck, bottleneck_blocks(depth, "pre-activation ResNet"), (64, 128, 256),
                       num_classes)
