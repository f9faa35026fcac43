"""``fold``: parameters, multiply-adds and inference speed of models before and after ``dirackit.fold``."""
from __future__ import annotations

import torch

from ..folding import check_fold, fold
from ..metrics import count_macs, count_params, fold_speed
from ..registry import build_model

__all__ = ["fold_table"]


def fold_table(names: list[str], batch_size: int = 256, steps: int = 10, repeats: int = 3,
               device: str | torch.device = "cpu") -> list[dict]:
    """One row per freshly built model: its cost unfolded and folded, the fold's output error, and
    ``metrics.fold_speed``'s images/s and ``fold_speedup``.

    Every form of every model is timed in the same interleaved rounds, so all the figures (not
    only each model's speed-up) are comparable.
    """
    models, rows = {}, []
    for name in names:
        torch.manual_seed(0)
        model = models[name] = build_model(name).eval()
        error = check_fold(model, torch.randn(8, 3, 32, 32))
        folded = fold(model)
        rows.append({"model": name, "params": count_params(model), "macs": count_macs(model),
                     "folded_params": count_params(folded), "folded_macs": count_macs(folded), "fold_error": error})
    speed = fold_speed(models, batch_size, steps, repeats, device)
    return [{**row, **speed[row["model"]]} for row in rows]
