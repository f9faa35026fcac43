"""dirackit: Wide ResNets, DiracNets, DGConv and Diverse Branch Blocks on CIFAR.

The public API. Plotting lives in ``dirackit.viz`` and is imported on first use, so importing
dirackit never pulls in matplotlib, bokeh or ipywidgets; ``dirackit.reference`` too, so that
``python -m dirackit.reference`` runs it as a script without importing it twice.
"""
from __future__ import annotations

from . import models  # registers every model family (the registry itself imports none)
from . import claims, compare, course, explore, layers, loggers, papers, recipes, stats
from .data import CifarData, DataError, GpuLoader, load_cifar
from .estimate import estimate_run_time
from .folding import check_fold, fold
from .metrics import count_macs, count_params, fold_speed, inference_speed, training_speed
from .recipes import Recipe
from .registry import build_model, list_models, model_card, paper_recipe
from .restore import load_run
from .runlog import RunLog, load_runs
from .train import fit, resolve_device
from .train.command import repeat_command
from .version import __version__

__all__ = ["build_model", "list_models", "model_card", "paper_recipe", "count_params", "count_macs", "inference_speed",
           "fold_speed", "training_speed",
           "fold", "check_fold", "Recipe", "recipes", "layers", "load_cifar", "CifarData", "GpuLoader",
           "DataError", "fit", "resolve_device", "estimate_run_time", "RunLog", "load_run", "load_runs", "explore",
           "compare", "course", "claims", "papers", "reference", "stats", "loggers", "repeat_command"]


def __getattr__(name: str):
    if name in ("viz", "reference"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dirackit' has no attribute {name!r}")
