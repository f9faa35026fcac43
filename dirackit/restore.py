"""A finished run folder back as a model: rebuilt by name, with its checkpoint's weights.

The run folder's format is ``runlog``'s; this module sits above it and the registry, so that the log
itself stays a plain record any tool can read.
"""
from __future__ import annotations

import os

from .checkpoint import load_checkpoint
from .hooks import set_structure
from .registry import build_model
from .runlog import CHECKPOINT, RunLog

__all__ = ["load_run"]


def load_run(dir: str | os.PathLike, weights: bool = True):
    """``(model, config, log)`` of a run folder: the model rebuilt by name with the checkpoint's
    weights (eval mode, CPU), the provenance dict, and the per-epoch DataFrame. ``weights=False``
    rebuilds the architecture untrained (for runs shipped without their checkpoint, e.g. ``results/``),
    with the learned structure the last log row records where the model has one (``set_structure``:
    a G-ResNeXt's gates, which decide its folded shape)."""
    run = RunLog.read(dir)
    spec = run.header.get("model", {})
    if "name" not in spec or "options" not in spec:
        raise ValueError(f"{dir}: the model was not built with dirackit.build_model, so it cannot be "
                         f"rebuilt by name; build it yourself and load {CHECKPOINT}['model']")
    model = build_model(spec["name"], num_classes=spec["num_classes"], **spec["options"])
    if weights:
        model.load_state_dict(load_checkpoint(run.dir / CHECKPOINT)["model"])
    elif run.rows:
        set_structure(model, run.rows[-1])
    return model.eval(), run.header, run.frame()
