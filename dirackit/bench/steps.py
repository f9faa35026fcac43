"""One training step, two ways: the reference style and dirackit's fast path.

Reference: fp32, eager, NCHW; batches from a torchvision ``DataLoader`` over PIL images with worker
processes (pinned and copied asynchronously on CUDA); SGD over all parameters. Fast path: what
``dirackit.train.fit`` runs: ``GpuLoader`` (the split on the device, augmented there), the recipe's
precision (on CUDA bf16, or fp16 with a gradient scaler) and channels_last on CUDA, the recipe's
parameter groups, optionally ``torch.compile``; its "reduce-overhead" mode replays CUDA graphs,
which helps launch-bound nets such as DiracNet.
Both minimise the same objective (the model's ``loss`` hook if it has one) with the same recipe.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import CifarData
from ..precision import backward_and_step, grad_scaler
from ..recipes import Recipe
from ..train import autocast_for, objective, sgd, train_loader

__all__ = ["COMPILE_MODES", "GRAPH_MODES", "compile_mode_for", "reference_step", "fast_step"]

Step = Callable[[], None]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the ones that replay CUDA graphs


def compile_mode_for(mode: str | None, device: torch.device) -> tuple[str | None, str | None]:
    """``(mode to use, why it is not the one asked for, or None)``: modes built on CUDA graphs need
    CUDA, so elsewhere the fast path stays eager rather than measuring something else."""
    if mode is not None and mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
    if mode in GRAPH_MODES and device.type != "cuda":
        return None, f"--compile {mode} (it replays CUDA graphs, which need CUDA); the fast path runs eager"
    return mode, None


def _forever(batches: Iterable) -> Iterator:
    """Epoch after epoch of ``batches``, so a timed round never runs out."""
    while True:
        yield from batches


def reference_step(model: nn.Module, loader: DataLoader, recipe: Recipe, device: torch.device) -> Step:
    """A step of the reference style: next DataLoader batch, fp32 eager forward/backward, plain SGD."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    loss_fn, batches = objective(model, recipe), _forever(loader)

    def step() -> None:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def fast_step(model: nn.Module, data: CifarData, recipe: Recipe, batch_size: int, device: torch.device,
              compile_mode: str | None = None) -> Step:
    """A step of ``fit``'s loop (without its loss and NaN bookkeeping), with ``batch_size`` images.

    ``compile_mode``: None for eager, else a ``torch.compile`` mode (see ``compile_mode_for``).
    """
    cuda = device.type == "cuda"
    model.to(device).train()
    if cuda and recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    loader = train_loader(data, recipe, device, batch_size)
    if len(loader) == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {loader.num_samples} training images")
    optimizer = sgd(model, recipe)
    net = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    graphs = cuda and compile_mode in GRAPH_MODES
    autocast, loss_fn, batches = autocast_for(recipe, device), objective(model, recipe), _forever(loader)
    scaler = grad_scaler(recipe.precision, device)

    def step() -> None:
        x, y = next(batches)
        if graphs:  # a new iteration: the previous step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with autocast():
            loss = loss_fn(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        backward_and_step(loss, optimizer, scaler)
    return step
