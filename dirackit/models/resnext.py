"""ResNeXt for CIFAR (Xie et al., CVPR 2017) and G-ResNeXt, its DGConv version (Zhang et al., ICCV 2019).

The CIFAR template of the ResNeXt paper (appendix A): a 3x3 stem conv of 64 channels, three stages
of bottleneck blocks at 32, 16 and 8 pixels (stride 2 in the first block of stages 2 and 3),
output widths 256, 512, 1024, global average pooling and a linear head. A bottleneck is
``1x1 -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 1x1 -> BN``, added to the (projected) input, then ReLU.
``base_channels`` (64 in the paper; smaller for quick CPU runs) sets the stem width and the
output widths ``4 * base_channels * 2**stage``. Its 3x3 has ``cardinality * width * 2**stage`` channels: grouped with ``cardinality`` groups in
ResNeXt, dense with learned groups (a ``DGConv2d``) in G-ResNeXt, which is otherwise identical.

G-ResNeXt trains under a complexity budget (the model's ``loss``): with ``zeta`` the summed
nonzeros of every layer's U and ``o = sum C**2 / budget_groups`` the budget,
``loss = CE * (zeta / o)**0.02`` while ``zeta > o`` and plain CE otherwise (maintainer's recipe,
d-li14/dgconv.pytorch #1). ``budget_groups`` defaults to the cardinality, so the budget equals the
fixed-group ResNeXt's connection count.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..folding import fuse_conv_bn
from ..layers import DGConv2d
from ..registry import register
from .depth import bottleneck_blocks

__all__ = ["ResNeXt", "Bottleneck", "FoldedBottleneck", "resnext", "g_resnext"]



def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """The ResNeXt bottleneck; ``learned=True`` puts a dense ``DGConv2d`` in place of the grouped 3x3."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, groups: int,
                 learned: bool):
        super().__init__()
        self.conv1, self.bn1 = conv1x1(in_channels, width), nn.BatchNorm2d(width)
        if learned:
            self.conv2 = DGConv2d(width, width, 3, stride=stride, padding=1)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, out_channels), nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))

    @torch.no_grad()
    def fold(self) -> "FoldedBottleneck":
        """BNs merged into the convs; a DGConv becomes a real grouped conv whose channel permutation
        is absorbed into the 1x1 convs around it, so the result is a plain ResNeXt block."""
        conv1, conv3 = fuse_conv_bn(self.conv1, self.bn1), fuse_conv_bn(self.conv3, self.bn3)
        if isinstance(self.conv2, DGConv2d):
            conv2, order = self.conv2.grouped_conv()
            conv2 = fuse_conv_bn(conv2, _permuted_bn(self.bn2, order))
            conv1.weight.copy_(conv1.weight[order])
            conv1.bias.copy_(conv1.bias[order])
            conv3.weight.copy_(conv3.weight[:, order])
        else:
            conv2 = fuse_conv_bn(self.conv2, self.bn2)
        shortcut = self.shortcut
        if isinstance(shortcut, nn.Sequential):
            shortcut = fuse_conv_bn(*shortcut)
        return FoldedBottleneck(conv1, conv2, conv3, copy.deepcopy(shortcut)).eval()


def _permuted_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> nn.BatchNorm2d:
    permuted = copy.deepcopy(bn)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(permuted, name).copy_(getattr(bn, name)[order])
    return permuted


class FoldedBottleneck(nn.Module):
    """A bottleneck in inference form: three convs with bias, no BatchNorm."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, conv3: nn.Conv2d, shortcut: nn.Module):
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.shortcut = conv1, conv2, conv3, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.conv3(out) + self.shortcut(x))


class ResNeXt(nn.Module):
    """CIFAR ResNeXt with ``blocks_per_stage`` bottlenecks per stage (depth = 9 * blocks + 2)."""

    def __init__(self, blocks_per_stage: int, cardinality: int, width: int, num_classes: int = 10,
                 learned_groups: bool = False, budget_groups: int | None = None,
                 budget_exponent: float = 0.02, base_channels: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, base_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(base_channels), nn.ReLU(inplace=True))
        stages, in_channels = [], base_channels
        for s in range(3):
            inner, out_channels = cardinality * width * 2 ** s, 4 * base_channels * 2 ** s
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(Bottleneck(in_channels, inner, out_channels, stride, cardinality, learned_groups))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))
        self.budget_exponent = budget_exponent
        self.budget_groups = budget_groups or cardinality
        smallest = cardinality * width
        if learned_groups and not 1 <= self.budget_groups <= smallest:
            raise ValueError(f"budget_groups must be in [1, {smallest}] (the narrowest DGConv has {smallest} "
                             f"channels, so more groups than that cannot be reached), got {self.budget_groups}")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's ResNet init (used by the G-ResNeXt reference): Kaiming-normal fan-out convs,
        BN weight 1 and bias 0; DGConv gates get random signs (their own ``reset_gates``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, DGConv2d):
                m.reset_gates()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def dg_convs(self) -> list[tuple[str, DGConv2d]]:
        """(name, layer) of every DGConv, input to output (empty for a fixed-group ResNeXt)."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, DGConv2d)]

    def complexity(self) -> torch.Tensor:
        """zeta: summed nonzeros of every DGConv's U (differentiable in the gates)."""
        return sum(m.complexity() for _, m in self.dg_convs())

    def budget(self) -> float:
        """o = sum over DGConvs of C**2 / budget_groups."""
        return sum(m.in_channels ** 2 / self.budget_groups for _, m in self.dg_convs())

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, times ``(zeta / o)**0.02`` while over the complexity budget."""
        ce = F.cross_entropy(logits, targets)
        if not self.dg_convs():
            return ce
        ratio = self.complexity() / self.budget()
        return ce * torch.where(ratio > 1, ratio, torch.ones_like(ratio)) ** self.budget_exponent

    def no_weight_decay(self) -> set[str]:
        """Gates are exempt: decay would drag them to the sign boundary, where they flip at random."""
        return {f"{n}.gates" for n, _ in self.dg_convs()}

    @torch.no_grad()
    def group_costs(self, image_size: int = 32):
        """One row per bottleneck 3x3 conv, input to output: its output map, channels C, groups G (a
        DGConv's learned ones), connections C*C/G (the nonzeros of a DGConv's U: what the budget
        counts) and the multiply-adds per image of the grouped conv (connections x 9 x map pixels,
        for training and folded forms alike). The budget weighs a connection the same at every map
        size; the multiply-adds do not: one at 32x32 costs 16 times one at 8x8."""
        import pandas as pd
        convs = [(name, m.conv2) for name, m in self.named_modules() if isinstance(m, (Bottleneck, FoldedBottleneck))]
        maps = {}
        hooks = [conv.register_forward_hook(lambda m, _, out, name=name: maps.__setitem__(name, out.shape[-2:]))
                 for name, conv in convs]
        was_training = self.training
        try:
            self.eval()(torch.zeros(1, 3, image_size, image_size, device=next(self.parameters()).device))
        finally:
            self.train(was_training)
            for hook in hooks:
                hook.remove()
        rows = []
        for name, conv in convs:
            groups = conv.learned_groups if isinstance(conv, DGConv2d) else conv.groups
            connections = conv.in_channels * conv.out_channels // groups
            (h, w), taps = maps[name], conv.kernel_size[0] * conv.kernel_size[1]
            rows.append({"layer": f"{name}.conv2", "map": f"{h}x{w}", "channels": conv.in_channels, "groups": groups,
                         "connections": connections, "macs": connections * taps * h * w})
        return pd.DataFrame(rows)

    def set_structure(self, logged: dict) -> None:
        """Set the gates to the patterns of a ``log_state()`` row: a trained G-ResNeXt's group structure,
        hence its folded shape and speed, without its checkpoint."""
        patterns = logged.get("dg_gates", [])
        layers = self.dg_convs()
        if len(patterns) != len(layers):
            raise ValueError(f"the log row has {len(patterns)} gate patterns for {len(layers)} DGConv layers")
        for (_, layer), pattern in zip(layers, patterns):
            layer.set_gates(pattern)

    @torch.no_grad()
    def log_state(self) -> dict:
        """Per-epoch learned structure: each DGConv's gates and groups, and zeta / o."""
        layers = self.dg_convs()
        if not layers:
            return {}
        return {"dg_gates": [m.gate_pattern for _, m in layers],
                "dg_groups": [m.learned_groups for _, m in layers],
                "zeta_ratio": round(self.complexity().item() / self.budget(), 5)}


def _check(depth: int, cardinality: int, width: int, learned: bool, base_channels: int) -> int:
    if base_channels < 1:
        raise ValueError(f"base_channels must be >= 1 (64 in the paper), got {base_channels}")
    n = bottleneck_blocks(depth, "ResNeXt")
    if cardinality < 1 or width < 1:
        raise ValueError(f"cardinality and width must be >= 1, got {cardinality}x{width}d")
    inner = cardinality * width
    if learned and inner & (inner - 1):
        raise ValueError(f"G-ResNeXt needs cardinality*width to be a power of two (DGConv channels), got "
                         f"{cardinality}x{width}d = {inner}; e.g. 32x4d or 8x4d")
    return n


@register("resnext-{depth}-{cardinality}x{width}d", paper="Xie et al., CVPR 2017 (ResNeXt, CIFAR template)",
          recipe="resnext", examples=("resnext-29-8x4d", "resnext-29-32x4d"),
          params={"resnext-29-32x4d": 4_775_754, "resnext-29-8x64d": 34_426_698})
def resnext(depth: int, cardinality: int, width: int, *, num_classes: int = 10, base_channels: int = 64) -> ResNeXt:
    """ResNeXt-depth (c x d d) with fixed groups: the control for G-ResNeXt."""
    return ResNeXt(_check(depth, cardinality, width, False, base_channels), cardinality, width, num_classes,
                   base_channels=base_channels)


@register("g-resnext-{depth}-{cardinality}x{width}d", paper="Zhang et al., ICCV 2019 (DGConv)",
          recipe="resnext", examples=("g-resnext-29-8x4d", "g-resnext-29-32x4d"),
          params={"g-resnext-29-32x4d": 13_775_250})  # dense 13,775,178 + 3 * (7 + 8 + 9) gates
def g_resnext(depth: int, cardinality: int, width: int, *, num_classes: int = 10, budget_groups: int | None = None,
              budget_exponent: float = 0.02, base_channels: int = 64) -> ResNeXt:
    """ResNeXt with every grouped 3x3 replaced by a dense DGConv2d that learns its groups."""
    return ResNeXt(_check(depth, cardinality, width, True, base_channels), cardinality, width, num_classes,
                   learned_groups=True, budget_groups=budget_groups, budget_exponent=budget_exponent,
                   base_channels=base_channels)
