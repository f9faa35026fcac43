"""Training precision by device: what ``Recipe.precision="auto"`` means, and the autocast and gradient
scaler that go with each choice.

bf16 autocast needs a GPU with fast bf16, i.e. of compute capability 8.0 or more (Ampere and later:
A100, RTX 30xx, L4, H100). The GPUs many learners get (T4, V100, P100, RTX 20xx) have none, so there
``auto`` picks fp16 autocast with a gradient scaler: fp16 keeps 5 exponent bits against bf16's 8, so
small gradients would underflow to zero without the scaler multiplying the loss first. CPUs and
Apple's MPS train in fp32. An explicit ``bf16`` or ``fp16`` is honoured on every device, the CPU
included (PyTorch's CPU autocast), which is how the tests run every precision path without a GPU.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch

__all__ = ["PRECISIONS", "resolve_precision", "compute_capability", "autocast_factory", "grad_scaler",
           "backward_and_step", "describe_precision"]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FAST_BF16 = (8, 0)  # the first compute capability with bf16 tensor cores (Ampere)


def compute_capability(device: torch.device) -> tuple[int, int] | None:
    """``(major, minor)`` of a CUDA device; None for any other device."""
    return tuple(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``bf16``, ``fp16`` or ``fp32``: ``precision`` itself unless it is ``auto``, which picks bf16 on
    CUDA devices of compute capability >= 8.0, fp16 on older ones and fp32 on CPU and MPS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if compute_capability(device) >= FAST_BF16 else "fp16"


def autocast_factory(precision: str, device: str | torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the training step's autocast context for ``precision`` on ``device`` (fp32: none)."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return nullcontext
    dtype = _DTYPES[resolved]
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: str | torch.device) -> torch.amp.GradScaler | None:
    """A ``torch.amp.GradScaler`` when the precision resolves to fp16, else None (bf16 and fp32 need none)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type) if resolve_precision(precision, device) == "fp16" else None


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()`` and ``optimizer.step()``; with a scaler, the loss is scaled first, and a step
    whose gradients overflowed is skipped while the scale is lowered (``GradScaler.update``)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def describe_precision(precision: str, device: str | torch.device) -> str:
    """One line for logs: what is used, and why when ``auto`` chose it."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    what = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler", "fp32": "fp32"}[resolved]
    capability = compute_capability(device)
    where = f"{device.type}" + ("" if capability is None else f", compute capability {capability[0]}.{capability[1]}")
    if precision == "auto":
        return f"{what} (precision auto on {where})"
    slow = resolved == "bf16" and capability is not None and capability < FAST_BF16
    return f"{what} (precision {precision} on {where}{'; this GPU has no fast bf16' if slow else ''})"
