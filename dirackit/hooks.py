"""The optional methods through which a model plugs into dirackit, listed once and read only here.

None of them is required: a model (or, for ``fold``, any submodule) defines the ones it needs, and
library code reaches them through the functions below, never by name elsewhere.

hook                       read by                    what it does
-------------------------  -------------------------  -------------------------------------------------
``fold() -> nn.Module``    ``dirackit.fold``          a plain module computing the same function in
                                                      eval mode (Dirac conv, DBB, DGConv, DiracNet)
``loss(logits, targets)``  ``fit``, ``bench paths``   the training objective in place of cross-entropy
                                                      (G-ResNeXt's complexity budget); evaluation
                                                      always reports plain cross-entropy
``log_state() -> dict``    ``fit``                    small JSON-able summaries added to each epoch's
                                                      log row (Dirac alpha/beta, DGConv gates)
``no_weight_decay()``      ``param_groups``           parameter names that never decay (Dirac a, b)
``set_structure(row)``     ``load_run``               on an untrained copy (``weights=False``), the
                                                      learned structure a log row records (a
                                                      G-ResNeXt's gates decide its folded shape)
``build_spec`` (a dict)    ``fit``, ``load_run``      set by ``build_model``: name, classes, options,
                                                      so a run folder can rebuild the model
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["can_fold", "custom_loss", "log_state", "no_weight_decay", "set_structure", "build_spec",
           "set_build_spec"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def can_fold(module: nn.Module) -> bool:
    """Whether ``module`` decides its own inference form (has ``fold()``)."""
    return callable(getattr(module, "fold", None))


def custom_loss(model: nn.Module) -> Loss | None:
    """The model's own training objective, or None for the trainer's cross-entropy."""
    return getattr(model, "loss", None)


def log_state(model: nn.Module) -> dict:
    """The model's per-epoch summaries for the run log ({} when it has none)."""
    hook = getattr(model, "log_state", None)
    return hook() if hook is not None else {}


def no_weight_decay(model: nn.Module) -> set[str]:
    """Names of the parameters the model exempts from weight decay."""
    hook = getattr(model, "no_weight_decay", None)
    return set(hook()) if hook is not None else set()


def set_structure(model: nn.Module, logged: dict) -> None:
    """Give an untrained model the learned structure a log row records, where it has one."""
    hook = getattr(model, "set_structure", None)
    if hook is not None:
        hook(logged)


def build_spec(model: nn.Module) -> dict:
    """How the model was built (``{"name", "num_classes", "options"}``), or just its class name for a
    model that ``build_model`` did not make."""
    return getattr(model, "build_spec", {"name": type(model).__name__})


def set_build_spec(model: nn.Module, name: str, num_classes: int, options: dict) -> None:
    """Record on ``model`` how to rebuild it by name."""
    model.build_spec = {"name": name, "num_classes": num_classes, "options": dict(options)}
