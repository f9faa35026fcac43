"""DiracNet-d-k on CIFAR, and the plain network of the same shape it is compared with.

DiracNets v2: Zagoruyko & Komodakis, "DiracNets: Training Very Deep Neural Networks Without
Skip-Connections", arXiv:1706.00388 (2017); layout of the v2 reference ``diracnet.py``.

No skip connections anywhere: a stem conv, three groups of ``2n`` blocks (ReLU -> 3x3 conv -> BN)
at widths 16k, 32k, 64k with 2x2 max-pooling between groups, then ReLU, global average pool and a
linear head. DiracNet uses Dirac-parameterised convs; ``plain-d-k`` uses ordinary ones and is the
control experiment (the residual counterpart is ``wrn-d-k``). Depth counts convs as in WRN, so
DiracNet-34-2 has n = 5: 10 Dirac convs per group, 30 in all, plus the stem conv and the head.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Iterator

import torch
from torch import nn

from ..folding import fold_chain
from ..layers import DiracConv2d, dirac_weights
from ..registry import register
from .depth import basic_blocks
from .init import reference_init

__all__ = ["DiracNet", "diracnet", "plain"]

_PAPER = ("Zagoruyko & Komodakis, DiracNets: Training Very Deep Neural Networks Without "
          "Skip-Connections, arXiv:1706.00388 (2017)")


def _block(conv: type[nn.Conv2d], in_channels: int, out_channels: int) -> nn.Sequential:
    """ReLU -> 3x3 conv (stride 1, no bias) -> BN: pre-activation order, as in the reference."""
    return nn.Sequential(OrderedDict(
        relu=nn.ReLU(), conv=conv(in_channels, out_channels, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(out_channels)))


class DiracNet(nn.Module):
    """A skip-free conv chain; ``conv=DiracConv2d`` makes it a DiracNet, ``nn.Conv2d`` a plain net.

    ``fold()`` returns the inference form, a flat ``nn.Sequential`` of Conv2d (with bias), ReLU,
    MaxPool2d, AdaptiveAvgPool2d, Flatten and Linear: every Dirac weight and BatchNorm merged.

    ``fused_weights``: compute all Dirac weights at the start of each forward with one batched set of
    ops per weight shape (``dirac_weights``) rather than layer by layer: the same function and
    gradients with a fraction of the small ops (``python -m dirackit.bench dirac-ops``). The layer-by-
    layer path is taken anyway where fusing would change behaviour (see ``_fusable``).
    """

    def __init__(self, blocks_per_group: int, widths: tuple[int, int, int], num_classes: int = 10,
                 conv: type[nn.Conv2d] = DiracConv2d, fused_weights: bool = True):
        super().__init__()
        self.fused_weights = fused_weights
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, widths[0], 3, padding=1, bias=False), bn=nn.BatchNorm2d(widths[0]),
            relu=nn.ReLU()))
        features, in_channels = [], widths[0]
        for g, width in enumerate(widths):
            if g > 0:
                features.append(nn.MaxPool2d(2))
            features.append(nn.Sequential(*[_block(conv, in_channels if i == 0 else width, width)
                                            for i in range(blocks_per_group)]))
            in_channels = width
        self.features = nn.Sequential(*features)
        self.head = nn.Sequential(OrderedDict(
            relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
            fc=nn.Linear(in_channels, num_classes)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference init (see :func:`reference_init`)."""
        reference_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = [g for g in self.features if isinstance(g, nn.Sequential)]  # the MaxPool2d sit between them
        blocks = [block for group in groups for block in group]
        if not (self.fused_weights and self._fusable(groups, blocks)):  # a plain net, or each conv on its own
            return self.head(self.features(self.stem(x)))
        weights = iter(dirac_weights([block.conv for block in blocks]))  # in depth order
        x = self.stem(x)
        for group in self.features:
            if isinstance(group, nn.Sequential):
                for block in group:  # leaves are called as modules, so that hooks on them still fire
                    x = block.bn(block.conv(block.relu(x), weight=next(weights)))
            else:
                x = group(x)
        return self.head(x)

    def _fusable(self, groups: list[nn.Sequential], blocks: list[nn.Sequential]) -> bool:
        """The fused walk calls leaves only: it needs every block's conv to be a Dirac conv, no hook on
        ``features``, a group or a block (the walk skips their calls), and no pre-hook on a conv (pruning
        and weight_norm rewrite the weight there, after ``dirac_weights`` has read it). Runs every
        forward, so it only looks at attributes."""
        return bool(blocks) and all(isinstance(b.conv, DiracConv2d) and not b.conv._forward_pre_hooks for b in blocks) \
            and not any(m._forward_hooks or m._forward_pre_hooks for m in (self.features, *groups, *blocks))

    def blocks(self) -> Iterator[tuple[str, nn.Sequential]]:
        """(name, block) of every ReLU-conv-BN block, input to output."""
        for name, m in self.features.named_modules(prefix="features"):
            if isinstance(m, nn.Sequential) and "conv" in m._modules:
                yield name, m

    def dirac_convs(self) -> list[tuple[str, DiracConv2d]]:
        """(name, layer) of every Dirac conv in depth order (empty for a plain net)."""
        return [(f"{name}.conv", b.conv) for name, b in self.blocks() if isinstance(b.conv, DiracConv2d)]

    def no_weight_decay(self) -> set[str]:
        """Dirac alpha/beta and BatchNorm parameters are exempt from weight decay (reference v2)."""
        exempt = {nn.BatchNorm2d: ("weight", "bias"), DiracConv2d: ("alpha", "beta")}
        return {f"{name}.{p}" for name, m in self.named_modules() for p in exempt.get(type(m), ())}

    @torch.no_grad()
    def log_state(self) -> dict[str, list[float]]:
        """Per-layer summaries logged each epoch: mean alpha, mean beta, and the median over channels
        of |alpha|/|beta| (how identity-like the layer still is). Empty for a plain net."""
        layers = [m for _, m in self.dirac_convs()]
        if not layers:
            return {}
        rounded = lambda values: [float(f"{v:.5g}") for v in values]
        return {"dirac_alpha": rounded(m.alpha.mean().item() for m in layers),
                "dirac_beta": rounded(m.beta.mean().item() for m in layers),
                "dirac_ratio": rounded((m.alpha.abs() / m.beta.abs().clamp_min(1e-12)).median().item()
                                       for m in layers)}

    def fold(self) -> nn.Sequential:
        """The VGG-like inference chain computing the same function in eval mode."""
        return fold_chain(_leaves(copy.deepcopy(nn.Sequential(self.stem, self.features, self.head))))


def _leaves(module: nn.Module) -> Iterator[nn.Module]:
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _leaves(child)
    else:
        yield module


def _build(depth: int, width: int, num_classes: int, conv: type[nn.Conv2d], family: str) -> DiracNet:
    n = basic_blocks(depth, family)
    if width < 1:
        raise ValueError(f"{family} width must be a positive integer, got {width}")
    return DiracNet(2 * n, (16 * width, 32 * width, 64 * width), num_classes, conv)


@register("diracnet-{depth}-{width}", paper=_PAPER, recipe="diracnet",
          examples=("diracnet-34-2", "diracnet-28-10", "diracnet-100-1", "diracnet-16-1"),
          params={"diracnet-34-2": 1_854_378, "diracnet-28-10": 36_450_090, "diracnet-28-5": 9_124_250,
                  "diracnet-16-1": 173_402, "diracnet-34-1": 466_394, "diracnet-100-1": 1_540_698,
                  "diracnet-10-2": 298_922, "diracnet-16-2": 687_786, "diracnet-100-2": 6_131_882,
                  "diracnet-10-4": 1_187_658, "diracnet-16-4": 2_739_530, "diracnet-34-4": 7_395_146,
                  "diracnet-100-4": 24_465_738})
def diracnet(depth: int, width: int, *, num_classes: int = 10) -> DiracNet:
    """DiracNet-depth-width: 2(depth-4)/6 Dirac blocks per group at widths 16k, 32k, 64k."""
    return _build(depth, width, num_classes, DiracConv2d, "DiracNet")


@register("plain-{depth}-{width}", paper=_PAPER + ", plain baseline", recipe="diracnet",
          examples=("plain-34-2", "plain-100-1", "plain-16-1"))
def plain(depth: int, width: int, *, num_classes: int = 10) -> DiracNet:
    """The DiracNet layout with ordinary convs: no identity term, no weight normalisation."""
    return _build(depth, width, num_classes, nn.Conv2d, "plain net")
