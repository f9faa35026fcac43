"""Dirac-parameterised convolutions (DiracNets v2; Zagoruyko & Komodakis 2017, arXiv:1706.00388).

The conv runs with the effective weight

    W_hat[o] = alpha[o] * delta[o] + beta[o] * W[o] / ||W[o]||

where ``delta`` is the Dirac (identity) kernel of the weight's shape, ``||W[o]||`` the L2 norm of
output filter ``o`` over all its input channels and taps, and ``alpha``/``beta`` (the paper's a
and b) learnable per-output-channel vectors initialised to 1 and 0.1. At initialisation each layer
is therefore close to the identity, which is what lets a deep chain without skip connections train.
After training, ``fold()`` bakes ``W_hat`` into a plain conv: the same function, no extra cost.

Computing ``W_hat`` takes a handful of small ops per layer, which add up in a deep narrow DiracNet
(on a GPU each op is a kernel launch, whose fixed cost is not small next to a narrow layer's conv).
``dirac_weights(layers)`` computes the effective weights of many layers with one batched set of ops
per weight shape (``python -m dirackit.bench dirac-ops`` counts the ops of both ways);
``forward(x, weight=...)`` takes one of them.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiracConv1d", "DiracConv2d", "DiracConv3d", "dirac_kernel", "dirac_weights"]


def dirac_kernel(weight_shape: torch.Size | tuple[int, ...], groups: int = 1) -> torch.Tensor:
    """The identity kernel for a conv weight of this shape: ones at ``[j, j, centre]``.

    Within each group, output channel j copies input channel j for ``j < min(out, in)`` channels of
    that group; remaining output channels get no identity term (PyTorch's ``nn.init.dirac_``).
    """
    delta = torch.empty(weight_shape)
    return nn.init.dirac_(delta, groups)


def _effective(weight: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``alpha * delta + beta * W / ||W||`` per output filter, for one layer (``weight`` of ``delta``'s
    shape, ``alpha``/``beta`` of shape ``(out,)``) or a stack of them (one more leading dimension)."""
    taps = delta.dim() - 1  # the dimensions of one filter: input channels and kernel
    shape = alpha.shape + (1,) * taps
    w_norm = F.normalize(weight.flatten(-taps), dim=-1, eps=1e-12).view_as(weight)
    return alpha.view(shape) * delta + beta.view(shape) * w_norm


def dirac_weights(layers: Sequence[_DiracConvNd]) -> list[torch.Tensor]:
    """The effective weights of Dirac convs, in their order: the values and gradients of each layer's
    ``effective_weight()``, with far fewer ops when many layers share a weight shape.

    Layers with the same weight shape, groups, dtype and device (hence the same ``delta``) are stacked
    and computed together, so DiracNet-100-1's 96 Dirac convs take 5 batched computations.
    """
    kinds: dict[tuple, list[int]] = {}
    for i, layer in enumerate(layers):
        kinds.setdefault((layer.weight.shape, layer.groups, layer.weight.dtype, layer.weight.device), []).append(i)
    weights: dict[int, torch.Tensor] = {}
    for index in kinds.values():
        group = [layers[i] for i in index]
        weight, alpha, beta = (torch.stack([getattr(m, name) for m in group])
                               for name in ("weight", "alpha", "beta"))
        weights.update(zip(index, _effective(weight, alpha, beta, group[0].delta).unbind()))
    return [weights[i] for i in range(len(layers))]


class _DiracConvNd:
    """Mixin over ``nn.Conv1d/2d/3d``: same constructor, same attributes, Dirac-parameterised weight.

    What it computes, exactly: output position ``i`` (per spatial dimension) of channel ``j`` gets
    ``alpha[j] * x[j, i * stride + (k // 2) * dilation - padding]`` (zero outside the input) plus
    ``beta[j]`` times the normalised-filter conv, plus the bias if any; only the first
    ``min(in, out)`` channels of each group carry the identity term. So with ``alpha = 1``,
    ``beta = 0``, stride 1, an odd kernel and ``padding = dilation * (k // 2)`` (zero padding) the
    layer is exactly the identity when ``in == out``; a stride subsamples, other paddings or an
    even kernel shift the copied input.

    ``weight`` is the free tensor ``W`` and never the effective weight; use ``effective_weight()``.
    """

    _plain: type[nn.modules.conv._ConvNd]

    def _setup_dirac(self) -> None:
        out = self.out_channels
        factory = dict(device=self.weight.device, dtype=self.weight.dtype)
        self.alpha = nn.Parameter(torch.ones(out, **factory))
        self.beta = nn.Parameter(torch.full((out,), 0.1, **factory))
        self.register_buffer("delta", dirac_kernel(self.weight.shape, self.groups).to(**factory),
                             persistent=False)

    def reset_parameters(self) -> None:
        """He-normal ``W`` (the reference init: with the normalisation its scale leaves the forward
        pass unchanged but sets W's effective step size), alpha = 1, beta = 0.1."""
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if hasattr(self, "alpha"):
            nn.init.ones_(self.alpha)
            nn.init.constant_(self.beta, 0.1)

    def effective_weight(self) -> torch.Tensor:
        """``alpha * delta + beta * W / ||W||`` per output filter (differentiable)."""
        return _effective(self.weight, self.alpha, self.beta, self.delta)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The conv with ``weight``, this layer's effective weight precomputed by ``dirac_weights``
        (passed as an argument so that module hooks still fire), or else ``effective_weight()``."""
        return self._conv_forward(x, self.effective_weight() if weight is None else weight, self.bias)

    @torch.no_grad()
    def fold(self) -> nn.modules.conv._ConvNd:
        """A plain ``nn.ConvNd`` holding the effective weight: the same output, ordinary cost."""
        conv = self._plain(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                           padding=self.padding, dilation=self.dilation, groups=self.groups,
                           bias=self.bias is not None, padding_mode=self.padding_mode,
                           device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(self.effective_weight())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv.train(self.training)


class DiracConv1d(_DiracConvNd, nn.Conv1d):
    """``nn.Conv1d`` with a Dirac-parameterised weight (see the module docstring)."""

    _plain = nn.Conv1d

    def __init__(self, *args, **kwargs):
        nn.Conv1d.__init__(self, *args, **kwargs)
        self._setup_dirac()


class DiracConv2d(_DiracConvNd, nn.Conv2d):
    """``nn.Conv2d`` with a Dirac-parameterised weight (see the module docstring)."""

    _plain = nn.Conv2d

    def __init__(self, *args, **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._setup_dirac()


class DiracConv3d(_DiracConvNd, nn.Conv3d):
    """``nn.Conv3d`` with a Dirac-parameterised weight (see the module docstring)."""

    _plain = nn.Conv3d

    def __init__(self, *args, **kwargs):
        nn.Conv3d.__init__(self, *args, **kwargs)
        self._setup_dirac()
