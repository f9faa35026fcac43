"""``fold``: inference speed of models before and after ``dirackit.fold``, in the same rounds."""
from __future__ import annotations

import torch

from ..folding import check_fold, fold
from ..metrics import count_macs, count_params, inference_speed
from ..registry import build_model

__all__ = ["fold_speed"]


def fold_speed(names: list[str], batch_size: int = 256, steps: int = 10, repeats: int = 3,
               device: str | torch.device = "cpu") -> list[dict]:
    """Unfolded and folded inference img/s of freshly built models, and each fold's output error.

    Every form of every model is timed in the same interleaved rounds, so all the figures (not
    only each model's speed-up) are comparable.
    """
    models, rows = {}, []
    for name in names:
        torch.manual_seed(0)
        model = build_model(name).eval()
        error = check_fold(model, torch.randn(8, 3, 32, 32))
        models[name], models[name + " folded"] = model, fold(model)
        rows.append({"model": name, "params": count_params(model), "macs": count_macs(model),
                     "folded_params": count_params(models[name + " folded"]),
                     "folded_macs": count_macs(models[name + " folded"]), "fold_error": error})
    speed = inference_speed(models, batch_size, steps, repeats, device)
    for row in rows:
        row["unfolded_img_s"], row["folded_img_s"] = speed[row["model"]], speed[row["model"] + " folded"]
        row["speedup"] = row["folded_img_s"] / row["unfolded_img_s"]
    return rows
