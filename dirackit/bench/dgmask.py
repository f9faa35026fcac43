"""``dgmask``: what building a DGConv's mask U costs next to the layer's own forward and backward pass,
for the chain of Kronecker products dirackit uses and for the closed form written out entry by entry."""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..layers import DGConv2d

__all__ = ["mask_cost", "parse_layer"]


def _closed_form_mask(gates: torch.Tensor) -> torch.Tensor:
    """U entry by entry: ``U[o, i] = prod_k (1 - (1 - g_k) [bit_k(o) != bit_k(i)])``, one C x C
    product per gate (the alternative to the Kronecker chain that ``gate_mask`` uses)."""
    channels = 2 ** gates.numel()
    shifts = torch.arange(gates.numel() - 1, -1, -1, device=gates.device)
    bits = (torch.arange(channels, device=gates.device)[None, :] >> shifts[:, None]) & 1
    mask = torch.ones((), device=gates.device)
    for g, b in zip(gates, bits):
        mask = mask * (1 - (1 - g) * (b[:, None] != b[None, :]).to(gates.dtype))
    return mask


def _best_seconds(fn: Callable[[], object], steps: int, repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def mask_cost(channels: int, size: int, batch_size: int = 128, steps: int = 10, repeats: int = 3,
              device: str | torch.device = "cpu") -> dict:
    """Seconds per forward+backward of: U by Kronecker products (dirackit's), U in closed form, the
    whole layer."""
    device = torch.device(device)
    torch.manual_seed(0)
    layer = DGConv2d(channels, channels, 3, padding=1).to(device)
    x = torch.randn(batch_size, channels, size, size, device=device)

    def kronecker():
        layer.mask().sum().backward()

    def closed_form():
        _closed_form_mask(layer.binary_gates()).sum().backward()

    def whole_layer():
        layer(x).square().mean().backward()

    times = {name: _best_seconds(fn, steps, repeats, device)
             for name, fn in (("kronecker", kronecker), ("closed_form", closed_form), ("layer", whole_layer))}
    return {"channels": channels, "size": size, **times}


def parse_layer(spec: str) -> tuple[int, int]:
    """``"128@32"`` -> (128 channels, 32x32 maps); a channel count no DGConv can have raises ValueError."""
    try:
        channels, size = (int(v) for v in spec.split("@"))
    except ValueError:
        raise ValueError(f"a layer is CHANNELS@SIZE such as 128@32, got {spec!r}") from None
    DGConv2d(channels, channels, 3)  # a clear error for channel counts a DGConv cannot have
    return channels, size
