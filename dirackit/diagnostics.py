"""Looking inside trained and untrained nets: signal magnitudes against depth at initialisation (why
deep plain nets fail), how far a DiracNet's a and b moved in training, and where in its window a
folded conv puts its weight (kernel skeleton)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .folding import fold

__all__ = ["signal_profile", "dirac_movement", "kernel_skeleton"]


def signal_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """RMS of every conv's output and of the loss gradient with respect to it, input to output.

    One forward and backward pass in train mode (BatchNorm uses batch statistics, as in the first
    training step) with cross-entropy on ``(x, y)``. With BatchNorm after every conv the forward
    activations stay normalised whatever the depth, so they hide the problem; the backward signal
    does not: in a deep plain net each layer multiplies the gradient by a Jacobian that is far from
    orthogonal, so its magnitude grows or shrinks geometrically from the last layer to the first
    and the early layers get useless updates. Dirac layers start near the identity, which keeps the
    gradient profile flat. The caller's model is untouched: the pass runs on a deep copy.

    Returns a DataFrame with columns ``depth`` (1-based, forward order), ``layer`` (module name),
    ``activation_rms`` and ``grad_rms``.
    """
    import pandas as pd
    net = copy.deepcopy(model).train().requires_grad_(True)
    names, outputs = [], []

    def capture(name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            names.append(name)
            outputs.append(output)
        return hook

    handles = [m.register_forward_hook(capture(name)) for name, m in net.named_modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(net(x), y)
            grads = torch.autograd.grad(loss, outputs)
    finally:
        for handle in handles:
            handle.remove()
    rms = lambda t: t.detach().float().pow(2).mean().sqrt().item()
    return pd.DataFrame({"depth": range(1, len(names) + 1), "layer": names,
                         "activation_rms": [rms(t) for t in outputs], "grad_rms": [rms(g) for g in grads]})


@torch.no_grad()
@torch.no_grad()
def dirac_movement(initial: nn.Module, trained: nn.Module):
    """How far each Dirac conv's ``alpha`` and ``beta`` moved from ``initial`` to ``trained`` (the
    same network before and after training, e.g. a ``copy.deepcopy`` taken before ``fit``).

    One row per layer, input to output: the channel means before and after, and the relative change
    ``mean |trained - initial| / mean |initial|`` of each. A learned value that stays at its
    initialisation says nothing about what the layer needs; this tells which ones moved.
    """
    import pandas as pd
    from .layers import DiracConv2d
    pairs = list(zip(*([m for m in net.modules() if isinstance(m, DiracConv2d)] for net in (initial, trained))))
    if not pairs:
        raise ValueError("no Dirac convs to compare: pass a DiracNet (diracnet-d-k) before and after training")
    rows = []
    for depth, (before, after) in enumerate(pairs, start=1):
        row = {"depth": depth}
        for name in ("alpha", "beta"):
            a, b = getattr(before, name).float().cpu(), getattr(after, name).float().cpu()
            if a.shape != b.shape:
                raise ValueError(f"layer {depth}: {name} has shape {tuple(a.shape)} before and {tuple(b.shape)} "
                                 f"after: these are not the same network")
            row |= {f"{name}_initial": a.mean().item(), f"{name}_trained": b.mean().item(),
                    f"{name}_change": ((b - a).abs().mean() / a.abs().mean().clamp_min(1e-12)).item()}
        rows.append(row)
    return pd.DataFrame(rows)


def kernel_skeleton(model: nn.Module, kernel_size: int = 3) -> torch.Tensor:
    """Mean |weight| at each position of the KxK window, for every KxK conv of the folded model.

    Returns a ``(layers, K, K)`` tensor in forward order, each layer divided by its largest entry
    (the normalisation of the ACNet and DBB papers), so ``.mean(0)`` is their "kernel skeleton".
    Folding first makes a branched model and a plain one comparable: both become the convs they
    deploy as. The model is not modified.
    """
    convs = [m for m in fold(model).modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (kernel_size,) * 2]
    if not convs:
        raise ValueError(f"the folded model has no {kernel_size}x{kernel_size} conv; pick a kernel_size it uses")
    magnitudes = torch.stack([conv.weight.detach().float().abs().mean((0, 1)).cpu() for conv in convs])
    return magnitudes / magnitudes.amax((1, 2), keepdim=True).clamp_min(1e-30)
