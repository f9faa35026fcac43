"""``dirac-ops``: what computing all of a DiracNet's Dirac weights in one fused step saves in a training
step: the aten operators dispatched (on a GPU, to first order, one kernel launch each) and the step
time, layer by layer (``fused_weights=False``) against fused (``DiracNet.fused_weights``)."""
from __future__ import annotations

import statistics
import time
from collections import Counter
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ..models.diracnet import DiracNet
from ..recipes import get_recipe
from ..registry import build_model
from ..train import sgd

__all__ = ["dirac_ops", "check_dirac_model"]

_NO_KERNEL = {torch.ops.aten.empty, torch.ops.aten.empty_strided, torch.ops.aten.empty_like}


class _OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched below autograd (what runs, backward included), with views
    and bare allocations, which launch no kernel, apart."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts["free" if func.is_view or func.overloadpacket in _NO_KERNEL else "kernel"] += 1
        return func(*args, **(kwargs or {}))


def check_dirac_model(name: str) -> None:
    """A ValueError unless ``name`` builds a DiracNet with Dirac convs (a plain net has nothing to fuse)."""
    model = build_model(name)
    if not (isinstance(model, DiracNet) and model.dirac_convs()):
        raise ValueError(f"dirac-ops compares the two ways a DiracNet computes its Dirac weights; {name} has none "
                         f"(use diracnet-D-K)")


def dirac_ops(names: list[str], batch_size: int = 64, steps: int = 10, repeats: int = 5,
              device: str | torch.device = "cpu") -> list[dict]:
    """Per model, a row for per-layer and one for fused Dirac weights: the ops of one training step
    (forward with cross-entropy, backward, the diracnet recipe's SGD step) counted on the step after a
    warm-up step, and the median over ``repeats`` rounds of the seconds per step, the two forms taking
    turns in every round on the same model, optimizer and batch."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = build_model(name).to(device).train()
        optimizer = sgd(model, get_recipe("diracnet"))
        x = torch.randn(batch_size, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (batch_size,), device=device)

        def step(phases=(nullcontext(),) * 3) -> None:
            with phases[0]:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            with phases[1]:
                loss.backward()
            with phases[2]:
                optimizer.step()

        convs = [conv for _, conv in model.dirac_convs()]
        kinds = {(c.weight.shape, c.groups) for c in convs}
        forms = {}
        for fused in (False, True):
            model.fused_weights = fused
            step()  # warm-up: the optimizer creates its momentum buffers
            phases = [_OpCounter() for _ in range(3)]
            step(phases)
            forward, backward, update = (p.counts["kernel"] for p in phases)
            forms[fused] = {"model": name, "fused": fused, "dirac_convs": len(convs),
                            "computations": len(kinds) if fused else len(convs), "forward": forward,
                            "backward": backward, "optimizer": update, "ops": forward + backward + update,
                            "views": sum(p.counts["free"] for p in phases), "times": []}
        for _ in range(repeats):
            for fused, row in forms.items():
                model.fused_weights = fused
                sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                sync()
                row["times"].append((time.perf_counter() - t0) / steps)
        per_layer = forms[False]
        for row in forms.values():
            row["step_s"] = statistics.median(row["times"])
            row["ops_ratio"] = row["ops"] / per_layer["ops"]
            row["time_ratio"] = row["step_s"] / statistics.median(per_layer["times"])
        rows += forms.values()
    return rows
