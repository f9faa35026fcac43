"""Depth versus width without training: what a network costs, and where the paper's runs sit.

``describe(name)`` is what the notebook's sliders show: parameters, multiply-adds, a memory
estimate for training, and (on request, cached) the measured training speed on this machine.
``PAPER_RESULTS`` holds the published CIFAR errors the explorer places a choice among, and
``cost_table`` answers what the sliders show for a few networks at once, as a table an executed
notebook keeps.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .data import CifarData
from .metrics import count_macs, count_params, training_speed
from .models.depth import basic_blocks
from .papers import WRN
from .recipes import Recipe
from .registry import build_model
from .train import fit

__all__ = ["PAPER_RESULTS", "describe", "training_memory", "measured_speed", "wrn_name", "try_network",
           "cost_table", "param_breakdown"]

# Zagoruyko & Komodakis, BMVC 2016, final table (mean/std preprocessing, no dropout, median of 5
# runs): params in millions as published, test error in %. ``name`` is the registry model, if any.
PAPER_RESULTS = (
    {"label": "ResNet-110", "name": None, "params_m": 1.7, "c10": 6.43, "c100": 25.16, "family": "thin"},
    {"label": "ResNet-1202", "name": None, "params_m": 10.2, "c10": 7.93, "c100": 27.82, "family": "thin"},
    {"label": "pre-act ResNet-164", "name": "preresnet-164", "params_m": 1.7, "c10": 5.46, "c100": 24.33,
     "family": "thin"},
    {"label": "pre-act ResNet-1001", "name": "preresnet-1001", "params_m": 10.2, "c10": 4.92, "c100": 22.71,
     "family": "thin"},
    {"label": "WRN-40-4", "name": "wrn-40-4", "params_m": 8.9, "c10": 4.53, "c100": 21.18, "family": "wide"},
    {"label": "WRN-16-8", "name": "wrn-16-8", "params_m": 11.0, "c10": 4.27, "c100": 20.43, "family": "wide"},
    {"label": "WRN-28-10", "name": "wrn-28-10", "params_m": 36.5, "c10": 4.00, "c100": 19.25, "family": "wide"},
)


def wrn_name(depth: int, width: int) -> str:
    """The registry name of WRN-depth-width, with a clear error for an impossible depth."""
    basic_blocks(depth, "WRN")
    if width < 1:
        raise ValueError(f"a WRN's width k is a positive integer, got {width}")
    return f"wrn-{depth}-{width}"


@torch.no_grad()
def training_memory(model: nn.Module, batch_size: int = 128, image_size: int = 32) -> dict[str, float]:
    """An estimate of what training needs, in MiB (fp32): weights, gradients and SGD momentum
    (3 copies of the parameters), and activations: the output of every leaf module, which autograd
    keeps for the backward pass (a ReLU done in place shares its input's memory and is not counted).

    An estimate, not a measurement: the allocator's overhead, cuDNN workspaces and autocast (bf16 or fp16)
    change the real figure.
    """
    activations = 0

    def hook(module: nn.Module, _, output: torch.Tensor) -> None:
        nonlocal activations
        if not getattr(module, "inplace", False) and isinstance(output, torch.Tensor):
            activations += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.train()(torch.zeros(2, 3, image_size, image_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    mib = 4 / 2 ** 20
    params = sum(p.numel() for p in model.parameters())
    state = 3 * params * mib
    acts = activations / 2 * batch_size * mib
    return {"weights_grads_momentum_mib": state, "activations_mib": acts, "total_mib": state + acts}


@functools.lru_cache(maxsize=64)
def measured_speed(name: str, batch_size: int = 32, steps: int = 2, device: str = "cpu") -> float:
    """Training images/s of ``name`` on this machine (a few timed steps; cached per argument set,
    so moving a slider back to a network measured before costs nothing)."""
    return training_speed({name: build_model(name)}, batch_size, steps, repeats=1, device=device)[name]


def describe(name: str, batch_size: int = 128, speed: bool = False, device: str = "cpu",
             num_classes: int = 10) -> dict:
    """What the explorer shows for one network: parameters, multiply-adds per image, the training
    memory estimate at ``batch_size``, and with ``speed`` the measured training images/s."""
    model = build_model(name, num_classes=num_classes)
    info = {"name": name, "params": count_params(model), "macs": count_macs(model),
            **training_memory(model, batch_size)}
    if speed:
        info["train_img_s"] = measured_speed(name, device=device)
    return info


def try_network(name: str, data: CifarData, recipe: Recipe, out: str | os.PathLike, *, dropout: float = 0.0,
                device: str = "auto", progress: bool = False, callbacks=()) -> dict:
    """Train one network of the explorer for ``recipe``'s short budget; returns its comparison row
    (name, parameters, final test accuracy, training images/s, seconds). The run log goes to
    ``out/<name>-dropout<p>``; an existing run there is refused by ``fit`` rather than overwritten."""
    options = {"dropout": dropout} if dropout else {}
    model = build_model(name, num_classes=data.num_classes, **options)
    run = fit(model, data, recipe, Path(out, f"{name}-dropout{dropout:g}"), device=device, progress=progress,
              callbacks=callbacks)
    last = run.rows[-1]
    return {"model": name, "dropout": dropout, "params": count_params(model), "epochs": last["epoch"],
            "test_acc": last["test_acc"], "train_img_s": last["images_per_s"],
            "seconds": sum(r["seconds"] for r in run.rows)}


def cost_table(names: Sequence[str], batch_size: int = 4, steps: int = 1, device: str = "cpu",
               dataset: str = "CIFAR-10"):
    """One row per network: parameters, multiply-adds per image, training images/s measured here
    (``steps`` steps of ``batch_size`` random images after a warm-up step, all networks timed in the
    same round, so their ratios are the meaningful part) and the WRN paper's test error on
    ``dataset`` where ``dirackit.papers`` has it (else NaN)."""
    import pandas as pd
    models = {name: build_model(name) for name in names}
    rows = [{"network": name.upper(), "params_m": count_params(m) / 1e6, "macs_g": count_macs(m) / 1e9}
            for name, m in models.items()]
    speed = training_speed(models, batch_size, steps, repeats=1, device=device)
    for row, name in zip(rows, names):
        figure = WRN.figure(name, dataset)
        row.update(train_img_s=speed[name], paper_error_pct=figure.value if figure else float("nan"))
    return pd.DataFrame(rows).set_index("network")


def param_breakdown(model: nn.Module) -> dict[str, int]:
    """Where a parameter count comes from: the parameters of each kind of layer ("3x3 conv",
    "1x1 conv", "BatchNorm", "Linear", ...), largest first."""
    counts: dict[str, int] = {}
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if not own:
            continue
        if isinstance(module, nn.Conv2d):
            kind = "x".join(map(str, module.kernel_size)) + " conv"
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            kind = "BatchNorm"
        else:
            kind = type(module).__name__
        counts[kind] = counts.get(kind, 0) + own
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
