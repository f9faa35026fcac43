"""Folding a trained model into its inference form, and checking that nothing changed.

``fold(model)`` returns a new model: every child that has a ``fold()`` method is replaced by what
that method returns (a plain module computing the same function in eval mode), and inside every
``nn.Sequential`` each BatchNorm that directly follows a conv is merged into that conv's weight and
bias. A model that has its own ``fold()`` (a DiracNet, which becomes one flat conv-ReLU chain)
decides its inference form itself, usually through ``fold_chain``. The input model is never modified.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .hooks import can_fold

__all__ = ["fold", "fold_chain", "fuse_conv_bn", "check_fold", "FoldError"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class FoldError(AssertionError):
    """A folded model does not compute what the original computes."""


def fold(model: nn.Module) -> nn.Module:
    """A new eval-mode model in inference form; ``model`` itself is left untouched."""
    folded = copy.deepcopy(model).eval()
    if can_fold(folded) and not isinstance(folded, nn.Sequential):
        return folded.fold().eval()
    _fold_children(folded)
    return folded


def _fold_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if can_fold(child):
            setattr(module, name, child.fold().eval())
        else:
            _fold_children(child)
    if isinstance(module, nn.Sequential):
        _fuse_conv_bn_pairs(module)


def _fuse_conv_bn_pairs(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if isinstance(conv, _CONVS) and isinstance(bn, _BNS) and bn.track_running_stats:
            seq._modules[first] = fuse_conv_bn(conv, bn)
            seq._modules[second] = nn.Identity()


def fuse_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A new conv computing eval-mode ``bn(conv(x))``; its bias is a parameter like the weight.
    Neither input is modified (not even its train/eval mode)."""
    fused = copy.deepcopy(conv).eval()
    fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                    bn.eps, bn.weight, bn.bias)
    return fused.requires_grad_(conv.weight.requires_grad)


def fold_chain(layers: Iterable[nn.Module]) -> nn.Sequential:
    """One flat eval-mode ``nn.Sequential`` from a chain of layers, in inference form.

    Layers with ``fold()`` are replaced, a BatchNorm right after a conv is merged into it, and
    ``nn.Identity`` and a ReLU directly after a ReLU (which changes nothing) are dropped. The given
    layers are not modified.
    """
    chain: list[nn.Module] = []
    for layer in layers:
        layer = layer.fold() if can_fold(layer) else copy.deepcopy(layer)
        previous = chain[-1] if chain else None
        if isinstance(layer, _BNS) and isinstance(previous, _CONVS) and layer.track_running_stats:
            chain[-1] = fuse_conv_bn(previous, layer)
        elif not (isinstance(layer, nn.Identity) or isinstance(layer, nn.ReLU) and isinstance(previous, nn.ReLU)):
            chain.append(layer)
    return nn.Sequential(*chain).eval()


def unfolded_parts(model: nn.Module) -> list[str]:
    """Names of what ``fold`` would still change: foldable layers and conv->BN pairs."""
    found = [n for n, m in model.named_modules() if n and can_fold(m)]
    for name, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            kids = [c for c in m.children() if not isinstance(c, nn.Identity)]
            found += [f"{name}: {type(a).__name__}->{type(b).__name__}" for a, b in zip(kids, kids[1:])
                      if isinstance(a, _CONVS) and isinstance(b, _BNS)]
    return found


@torch.no_grad()
def check_fold(model: nn.Module, x: torch.Tensor, tol: float = 1e-5) -> float:
    """Fold ``model`` and compare eval-mode outputs on ``x``; returns max|delta| / max|reference|.

    Raises ``FoldError`` when the relative error exceeds ``tol`` or when something foldable is
    left in the folded model. ``model``'s train/eval mode is restored afterwards.
    """
    was_training = model.training
    try:
        reference = model.eval()(x)
        folded = fold(model)
        error = ((folded(x) - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()
    finally:
        model.train(was_training)
    left = unfolded_parts(folded)
    if left:
        raise FoldError(f"fold left foldable parts behind: {left[:5]}")
    if not error <= tol:
        raise FoldError(f"folded model differs: max|delta|/max|ref| = {error:.3g} > {tol:g}")
    return error
