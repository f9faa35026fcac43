"""All four ideas side by side: one row per finished run, with what it cost to train and to deploy.

``summarize_runs`` reads run folders (the course notebooks' and the reference logs in ``results/``);
``deploy_speed`` rebuilds each run's model from its checkpoint and times it before and after
``dirackit.fold``, every model in the same interleaved rounds.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch

from .folding import check_fold
from .metrics import fold_speed
from .restore import load_run
from .runlog import CHECKPOINT, RunLog, load_runs
from .stats import Comparison, compare_paired, compare_unpaired

__all__ = ["FAMILIES", "family_of", "summarize_runs", "deploy_speed", "compare_runs"]

# Registry-name prefix -> the idea it belongs to; the first match wins, so longer prefixes first.
FAMILIES = (("g-resnext", "G-ResNeXt"), ("resnext", "ResNeXt"), ("diracnet", "DiracNet"),
            ("plain", "plain (no skips)"), ("wrn", "WRN"), ("preresnet", "pre-act ResNet"))


def family_of(name: str) -> str:
    """The idea a registry model belongs to, e.g. ``vgg16-dbb`` -> ``DBB``, ``wrn-16-4`` -> ``WRN``."""
    if name.endswith("-odbb"):
        return "online DBB"
    if name.endswith("-dbb"):
        return "DBB"
    if name.startswith(("vgg", "resnet")):
        return "plain conv-BN"
    return next((label for prefix, label in FAMILIES if name.startswith(prefix + "-")), "other")


def summarize_runs(paths: Iterable[str | os.PathLike] | str | os.PathLike):
    """One row per run folder under ``paths``: run, model, family, dataset ("cifar10", "cifar100",
    or "N classes"), params, epochs, final test accuracy and training images/s (mean over the epochs
    after the first, which holds the warm-up)."""
    import pandas as pd
    frame = load_runs(paths)
    rows = []
    for run, log in frame.groupby("run", sort=False):
        later = log[log["epoch"] > 1] if len(log) > 1 else log
        classes = log["num_classes"].iloc[0]
        rows.append({"run": run, "model": log["model"].iloc[0], "family": family_of(str(log["model"].iloc[0])),
                     "dataset": f"cifar{classes}" if classes in (10, 100) else f"{classes} classes",
                     "params": int(log["num_params"].iloc[0]), "epochs": int(log["epoch"].max()),
                     "test_acc": float(log["test_acc"].iloc[-1]),
                     "train_img_s": float(later["images_per_s"].mean())})
    return pd.DataFrame(rows)


def deploy_speed(runs: Iterable[str], batch_size: int = 256, steps: int = 5, repeats: int = 3,
                 device: str | torch.device = "cpu", probe_size: int = 8) -> list[dict]:
    """For each run folder: inference img/s of its trained model unfolded and folded, with
    ``fold_speedup`` (all timed in the same rounds by ``metrics.fold_speed``), and the fold's error on
    random inputs. A run shipped without its checkpoint (``results/``) is timed untrained but with its
    logged structure (a G-ResNeXt's learned groups), which costs the same as the trained model;
    ``trained`` says which."""
    models, rows = {}, []
    torch.manual_seed(0)
    probe = torch.randn(probe_size, 3, 32, 32)
    for run in runs:
        trained = Path(run, CHECKPOINT).is_file()
        model, _, _ = load_run(run, weights=trained)
        models[run] = model
        rows.append({"run": run, "trained": trained, "fold_error": check_fold(model, probe)})
    speed = fold_speed(models, batch_size, steps, repeats, device)
    return [{**row, **speed[row["run"]]} for row in rows]


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, a: str | None = None,
                 b: str | None = None) -> Comparison:
    """Test the claim "run ``a`` is more accurate than run ``b``" on their last evaluations: paired
    (McNemar) when both folders record per-image results on the same test images, else unpaired.
    ``a``/``b`` name them in the printed line (default: the model names)."""
    logs = [RunLog.read(run_a), RunLog.read(run_b)]
    names = [name or log.header.get("model", {}).get("name", str(log.dir)) for name, log in zip((a, b), logs)]
    for log in logs:
        if not log.rows:
            raise ValueError(f"{log.dir} has no finished epoch to compare")
    per_image = [log.test_correct() for log in logs]
    if all(per_image) and per_image[0][1] == per_image[1][1]:
        return compare_paired(per_image[0][0], per_image[1][0], *names)
    sizes = [log.header.get("data", {}).get("test_images") for log in logs]
    return compare_unpaired(logs[0].last["test_acc"], sizes[0], logs[1].last["test_acc"], sizes[1], *names)
