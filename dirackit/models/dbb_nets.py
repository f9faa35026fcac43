"""The CIFAR networks of the Diverse Branch Block experiments (Ding et al., CVPR 2021): VGG-16 and
ResNet-18, each plain or with branches.

``variant`` decides what stands in every K x K conv + BN with 1 < K < 7 (the DBB repo's rule, in
``convnet_utils.py``): ``"plain"`` a conv + BN, ``"dbb"`` a ``DiverseBranchBlock``, ``"odbb"`` an
``OnlineDiverseBranchBlock``. 1x1 convs and shortcut projections stay conv + BN in every variant,
so ``dirackit.fold`` turns all three variants into the same network: one conv with bias per conv-BN.
The registry names are ``vgg16``, ``vgg16-dbb``, ``vgg16-odbb``, ``resnet18``, ``resnet18-dbb``
and ``resnet18-odbb``.

VGG-16: the paper's only CIFAR model (Table 2). The DBB paper trains it "following ACNet", so it has
the layout of ACNet's CIFAR "vc" net (DingXiaoH/ACNet, ``base_model/vgg.py``, ``VCNet``): 13
conv-BN-ReLU of widths 64, 64, M, 128, 128, M, 256 x 3, M, 512 x 3, M, 512 x 3, M (M: 2x2 max-pool),
then a head of linear 512 -> 512, ReLU, linear 512 -> classes in place of VGG's 4096-wide stack.
ACNet flattens the 1 x 1 x 512 map; we average-pool it, which is the same at 32 x 32 inputs and
keeps other input sizes working.
ResNet-18: the usual CIFAR version (3x3 stem of 64 at stride 1, no max-pool; DBB issue #15 used
it): four stages of two basic blocks at widths 64, 128, 256, 512, stride 2 entering stages 2-4,
1x1 conv + BN projection shortcuts, global average pooling, linear.

``base_channels`` (64 in the paper) scales every width in proportion, for networks small enough
to train on a CPU. Weights keep PyTorch's default init; every BN starts at gamma = 1, beta = 0, which is the DBB
paper's setting.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DiverseBranchBlock, OnlineDiverseBranchBlock, branch_shares
from ..registry import register

__all__ = ["BranchStats", "VGG", "ResNet", "BasicBlock", "conv_bn", "vgg16", "vgg16_dbb", "vgg16_odbb", "resnet18",
           "resnet18_dbb", "resnet18_odbb"]

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
RESNET18_STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))  # (width, basic blocks)
BRANCHED = {"dbb": DiverseBranchBlock, "odbb": OnlineDiverseBranchBlock}
PAPER = "Ding et al., Diverse Branch Block, CVPR 2021"


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
            variant: str = "plain") -> nn.Module:
    """A K x K conv (padding K // 2, no bias) + BN, or the variant's block in its place when 1 < K < 7."""
    if variant != "plain" and variant not in BRANCHED:
        raise ValueError(f"variant must be 'plain', 'dbb' or 'odbb', got {variant!r}")
    if variant in BRANCHED and 1 < kernel_size < 7:
        return BRANCHED[variant](in_channels, out_channels, kernel_size, stride)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels)))


def _scaled(width: int, base_channels: int) -> int:
    """A layer width of the paper's layout (first stage 64) for a network whose first stage has
    ``base_channels``: the CPU-sized versions in the notebooks keep the shape, not the width."""
    if not isinstance(base_channels, int) or base_channels < 1:
        raise ValueError(f"base_channels is the first stage's width, a positive int (64 in the paper), "
                         f"got {base_channels!r}")
    return max(1, width * base_channels // 64)


class BranchStats:
    """What the branches of a ``-dbb`` / ``-odbb`` network learned; nothing for a plain one."""

    BRANCHES = ("kxk", "1x1", "1x1-avg", "1x1-kxk")

    def dbb_blocks(self) -> list[tuple[str, nn.Module]]:
        """(name, block) of every branched layer, input to output."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, tuple(BRANCHED.values()))]

    def log_state(self) -> dict[str, list[float]]:
        """Logged each epoch: each branch's share of every layer's folded kernel (``branch_shares``),
        as ``dbb_share_<branch>`` lists over the layers. A depthwise layer has no 1x1 branch (0)."""
        shares = [branch_shares(block) for _, block in self.dbb_blocks()]
        if not shares:
            return {}
        return {f"dbb_share_{b.replace('-', '_')}": [round(s.get(b, 0.0), 5) for s in shares] for b in self.BRANCHES}


class VGG(BranchStats, nn.Module):
    """conv-BN-ReLU layers and 2x2 max-pools as ``layout`` lists them, global average pool, then
    linear -> ReLU -> linear (the hidden layer as wide as the last conv: 512 in the paper)."""

    def __init__(self, layout: tuple = VGG16_LAYOUT, num_classes: int = 10, variant: str = "plain",
                 base_channels: int = 64):
        super().__init__()
        layers, in_channels = [], 3
        for width in layout:
            if width == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                width = _scaled(width, base_channels)
                layers += [conv_bn(in_channels, width, 3, variant=variant), nn.ReLU(inplace=True)]
                in_channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(in_channels, in_channels), nn.ReLU(inplace=True),
                                  nn.Linear(in_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class BasicBlock(nn.Module):
    """``relu(conv_bn2(relu(conv_bn1(x))) + shortcut(x))``; the shortcut is a 1x1 conv + BN when the
    shape changes. Its parts are conv-BN ``nn.Sequential``s or foldable blocks, so ``dirackit.fold``
    handles it without a ``fold()`` of its own."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, variant: str = "plain"):
        super().__init__()
        self.conv_bn1 = conv_bn(in_channels, out_channels, 3, stride, variant)
        self.conv_bn2 = conv_bn(out_channels, out_channels, 3, 1, variant)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn(in_channels, out_channels, 1, stride, variant)  # stays conv + BN: K = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_bn2(F.relu(self.conv_bn1(x))) + self.shortcut(x))


class ResNet(BranchStats, nn.Module):
    """CIFAR ResNet: 3x3 stem, stages of basic blocks (stride 2 entering every stage after the
    first), global average pool, linear."""

    def __init__(self, stages: tuple[tuple[int, int], ...] = RESNET18_STAGES, num_classes: int = 10,
                 variant: str = "plain", base_channels: int = 64):
        super().__init__()
        stages = tuple((_scaled(width, base_channels), blocks) for width, blocks in stages)
        in_channels = stages[0][0]
        self.stem = nn.Sequential(conv_bn(3, in_channels, 3, variant=variant), nn.ReLU(inplace=True))
        layers = []
        for s, (width, blocks) in enumerate(stages):
            for b in range(blocks):
                layers.append(BasicBlock(in_channels, width, 2 if s > 0 and b == 0 else 1, variant))
                in_channels = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


# Parameter counts (10 classes) come from closed-form counts per conv-BN written out in
# tests/models/test_dbb_nets.py, not from building the models.
@register("vgg16", paper=PAPER, recipe="dbb", examples=("vgg16",), params={"vgg16": 14_986_698})
def vgg16(*, num_classes: int = 10, base_channels: int = 64) -> VGG:
    """VGG-16 for CIFAR with conv + BN everywhere: the DBB paper's CIFAR baseline."""
    return VGG(num_classes=num_classes, base_channels=base_channels)


@register("vgg16-dbb", paper=PAPER, recipe="dbb", examples=("vgg16-dbb",), params={"vgg16-dbb": 34_555_673})
def vgg16_dbb(*, num_classes: int = 10, base_channels: int = 64) -> VGG:
    """VGG-16 with a DiverseBranchBlock in place of each of its 13 conv + BN pairs."""
    return VGG(num_classes=num_classes, variant="dbb", base_channels=base_channels)


@register("vgg16-odbb", paper=f"{PAPER}; online merging as in Hu et al., OREPA, CVPR 2022", recipe="dbb",
          examples=("vgg16-odbb",), params={"vgg16-odbb": 34_531_347})
def vgg16_odbb(*, num_classes: int = 10, base_channels: int = 64) -> VGG:
    """VGG-16 with an OnlineDiverseBranchBlock in place of each conv + BN pair."""
    return VGG(num_classes=num_classes, variant="odbb", base_channels=base_channels)


@register("resnet18", paper=PAPER, recipe="dbb", examples=("resnet18",), params={"resnet18": 11_173_962})
def resnet18(*, num_classes: int = 10, base_channels: int = 64) -> ResNet:
    """CIFAR ResNet-18 with conv + BN everywhere."""
    return ResNet(num_classes=num_classes, base_channels=base_channels)


@register("resnet18-dbb", paper=PAPER, recipe="dbb", examples=("resnet18-dbb",),
          params={"resnet18-dbb": 25_775_385})
def resnet18_dbb(*, num_classes: int = 10, base_channels: int = 64) -> ResNet:
    """CIFAR ResNet-18 with a DiverseBranchBlock in place of every 3x3 conv + BN (stem included)."""
    return ResNet(num_classes=num_classes, variant="dbb", base_channels=base_channels)


@register("resnet18-odbb", paper=f"{PAPER}; online merging as in Hu et al., OREPA, CVPR 2022", recipe="dbb",
          examples=("resnet18-odbb",), params={"resnet18-odbb": 25_752_979})
def resnet18_odbb(*, num_classes: int = 10, base_channels: int = 64) -> ResNet:
    """CIFAR ResNet-18 with an OnlineDiverseBranchBlock in place of every 3x3 conv + BN."""
    return ResNet(num_classes=num_classes, variant="odbb", base_channels=base_channels)
