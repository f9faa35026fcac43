"""The device's measured matmul peak, and model-FLOP utilisation (MFU) against it.

MFU = achieved training FLOP/s / peak FLOP/s (as Chowdhery et al. define it for PaLM, arXiv:2204.02311,
Appendix B), with training FLOPs = 6 x forward multiply-adds per image: a multiply-add is 2 FLOPs,
and the backward pass computes the gradients of both the activations and the weights, each about
the forward's cost, so a step costs about 3 forwards. The peak is measured in
the same run rather than taken from a data sheet, so the ratio shows what the model leaves unused
on this device as it is clocked and cooled today.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metrics import timed_in_turns
from ..precision import resolve_precision

__all__ = ["MatmulPeak", "matmul_peak", "training_flops", "mfu"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class MatmulPeak:
    """The best FLOP/s of a square matmul of side ``size`` in ``dtype`` on ``device``."""

    flops: float
    dtype: torch.dtype
    size: int
    device: str

    def describe(self) -> str:
        kind = str(self.dtype).removeprefix("torch.")
        return f"{self.flops / 1e12:,.2f} TFLOP/s ({kind} matmul {self.size}x{self.size}, measured in this run)"


def matmul_peak(device: str | torch.device = "cpu", size: int | None = None, steps: int = 10,
                repeats: int = 3) -> MatmulPeak:
    """Measured matmul FLOP/s in the precision ``fit`` picks for the device (what the fast path's convs
    run in): bf16 or fp16 on CUDA, fp32 elsewhere.

    ``size`` defaults to 8192 on CUDA (big enough to saturate the tensor cores) and 1024 on other
    devices (a CPU at that size is already near its peak and takes well under a second).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    size = size or (8192 if cuda else 1024)
    if size < 1:
        raise ValueError(f"the matmul size must be >= 1, got {size}")
    dtype = _DTYPES[resolve_precision("auto", device)]
    g = torch.Generator(device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    out = torch.empty(size, size, device=device, dtype=dtype)
    [seconds] = timed_in_turns({"matmul": lambda: torch.mm(a, b, out=out)}, steps, repeats, device).values()
    return MatmulPeak(2 * size**3 * steps / seconds, dtype, size, str(device))


def training_flops(macs: int) -> int:
    """FLOPs of one training step per image: forward (2 FLOPs per multiply-add) plus backward (2x forward)."""
    return 6 * macs


def mfu(images_per_s: float, macs: int, peak_flops: float) -> float:
    """Model-FLOP utilisation: the fraction of ``peak_flops`` a training run at ``images_per_s`` uses."""
    if peak_flops <= 0:
        raise ValueError(f"the peak must be positive FLOP/s, got {peak_flops}")
    return images_per_s * training_flops(macs) / peak_flops
