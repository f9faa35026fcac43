"""``time-to-accuracy``: seconds ``dirackit.train.fit`` needs to reach a test accuracy with a recipe.

The clock runs from the call of ``fit`` to the end of the evaluation that first reaches the target,
so it counts everything a user waits for: moving the data to the device, compilation warm-up in the
first steps, training and every epoch's evaluation. Training stops there (a callback raises); a run
that never reaches the target trains all its epochs and says so.
"""
from __future__ import annotations

import time

import torch

from ..data import CifarData
from ..recipes import Recipe
from ..registry import build_model
from ..train import fit

__all__ = ["time_to_accuracy"]


class _TargetReached(Exception):
    """Raised by the epoch callback to leave ``fit`` once the target accuracy is reached."""


def time_to_accuracy(name: str, data: CifarData, recipe: Recipe, target: float | None = None,
                     device: str | torch.device = "cpu", seed: int = 0) -> dict:
    """Train a freshly built ``name`` until its test accuracy reaches ``target`` (a fraction) or the
    recipe ends; ``target=None`` trains all epochs (accuracy within a time budget).

    Returns the epoch and seconds at the stop (``reached`` says whether the target was met),
    the test accuracy there and the best one seen, and ``fit``'s own training + evaluation
    seconds (its per-epoch timers, without setup).
    """
    if target is not None and not 0 < target <= 1:
        raise ValueError(f"the target is a test accuracy in (0, 1], got {target}")
    torch.manual_seed(seed)
    model = build_model(name, num_classes=data.num_classes)
    rows: list[dict] = []
    stopped_at = None

    def watch(row: dict, run) -> None:
        nonlocal stopped_at
        rows.append(row)
        if target is not None and row["test_acc"] >= target:
            stopped_at = time.perf_counter()
            raise _TargetReached

    t0 = time.perf_counter()
    try:
        fit(model, data, recipe, callbacks=[watch], progress=False, device=device)
    except _TargetReached:
        pass
    stopped_at = stopped_at or time.perf_counter()
    return {"model": name, "target": target, "reached": target is not None and rows[-1]["test_acc"] >= target,
            "epoch": rows[-1]["epoch"], "epochs": recipe.epochs, "seconds": stopped_at - t0,
            "fit_seconds": sum(r["seconds"] + r["eval_seconds"] for r in rows),
            "test_acc": rows[-1]["test_acc"], "best_acc": max(r["test_acc"] for r in rows)}
