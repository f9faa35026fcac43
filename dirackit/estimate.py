"""How long a training run would take on this machine, said before it starts.

The notebooks open with their real settings, sized for a GPU. On a CPU those settings train for
hours or days, so right after a notebook builds its networks ``estimate_run_time`` times a training
step of each one here and, when the settings are large, says how long the run would take and which
smaller settings finish in minutes. On a CUDA GPU, or when the settings are already small (the quick
CPU settings of ``ci/params/``), it measures nothing and says nothing.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .data import CifarData
from .metrics import count_macs, training_speed
from .registry import build_model
from .train import resolve_device

__all__ = ["estimate_run_time", "RunEstimate", "SMALL_FLOPS"]

# Training FLOPs (6 x multiply-adds per image, summed over the run) below which nothing is measured:
# the course's quick CPU settings need 3e12 to 1.1e13, its GPU settings 1e15 and more.
SMALL_FLOPS = 1e14
SAMPLE_BATCH = 8       # images of the timed step: enough for a fair per-image time, cheap for large nets
QUICK_SECONDS = 300.0  # what the suggested settings aim for
# (epochs, train_per_class, test_per_class) tried in turn for the suggestion, largest first
QUICK_SETTINGS = ((5, 500, 100), (4, 200, 100), (3, 100, 50), (2, 50, 20))
EVAL_COST = 1 / 3      # an image evaluated costs about a third of one trained (forward only)

Models = nn.Module | str | Mapping[str, nn.Module | str] | Iterable[nn.Module | str]


@dataclass(frozen=True)
class RunEstimate:
    """The measured estimate: ``seconds`` for the whole run (training and each epoch's evaluation,
    every network), from ``per_image`` training seconds of each network on ``device``."""

    seconds: float
    per_image: dict[str, float]
    device: str
    message: str

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:  # what a notebook shows under the printed message
        return f"RunEstimate(about {_duration(self.seconds)} on {self.device})"


def estimate_run_time(models: Models, data: CifarData, *, epochs: int, batch_size: int,
                      device: str | torch.device = "auto", options: Mapping[str, dict] | None = None
                      ) -> RunEstimate | None:
    """Time one training step of each of ``models`` on ``device`` and print how long training them all
    on ``data`` for ``epochs`` would take, with smaller settings that take minutes; returns the estimate.

    ``models``: networks or registry names (built with ``options[name]`` and the data's classes), one
    or several, or a dict of them by label. The networks given are not changed: a copy is timed.
    Returns None, having measured nothing, on a CUDA device or when the run is small.
    """
    device = resolve_device(device)
    if device.type == "cuda":
        return None
    nets = _networks(models, data.num_classes, options or {})
    train_images, test_images = len(data.train_labels), len(data.test_labels)
    flops = sum(6 * count_macs(net) for net in nets.values()) * train_images * epochs
    if flops < SMALL_FLOPS:
        return None
    per_image, sample = {}, min(batch_size, SAMPLE_BATCH)
    for label, net in nets.items():
        [img_s] = training_speed({label: copy.deepcopy(net)}, batch_size=sample, steps=1, repeats=1,
                                 device=device).values()
        per_image[label] = 1 / img_s
    every_net = sum(per_image.values())
    seconds = every_net * epochs * (train_images + EVAL_COST * test_images)
    message = _advice(seconds, per_image, sample, device, epochs, train_images, data.num_classes, every_net)
    print(message)
    return RunEstimate(seconds, per_image, str(device), message)


def _networks(models: Models, num_classes: int, options: Mapping[str, dict]) -> dict[str, nn.Module]:
    if isinstance(models, (nn.Module, str)):
        models = [models]
    items = models.items() if isinstance(models, Mapping) else ((None, m) for m in models)
    nets = {}
    for label, m in items:
        if isinstance(m, str):
            label, m = label or m, build_model(m, num_classes=num_classes, **options.get(m, {}))
        label = label or getattr(m, "build_spec", {}).get("name") or f"{type(m).__name__} {len(nets) + 1}"
        nets[label] = m
    if not nets:
        raise ValueError("no networks to estimate: pass one or more models or registry names")
    return nets


def _advice(seconds: float, per_image: dict[str, float], sample: int, device: torch.device, epochs: int,
            train_images: int, num_classes: int, every_net: float) -> str:
    steps = ", ".join(f"{label} {1e3 * s:.1f} ms" for label, s in per_image.items())
    lines = [f"On this {device.type.upper()}, these settings would train for about {_duration(seconds)}: "
             f"{len(per_image)} network{'s' if len(per_image) > 1 else ''}, {epochs} epochs of "
             f"{train_images:,} images (measured per training image, from a step of {sample}: {steps}).",
             "They are sized for a GPU, where the notebook runs them as they are."]
    for quick_epochs, train_per_class, test_per_class in QUICK_SETTINGS:
        quick = every_net * quick_epochs * num_classes * (train_per_class + EVAL_COST * test_per_class)
        if quick <= QUICK_SECONDS:
            break
    lines.append(f"To run here, lower epochs and train_per_class in the parameters cell: epochs={quick_epochs}, "
                 f"train_per_class={train_per_class}, test_per_class={test_per_class} would take about "
                 f"{_duration(quick)} with these networks"
                 + ("" if quick <= QUICK_SECONDS else " (smaller networks would be quicker)")
                 + "; the settings CI runs on a CPU are in ci/params/.")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
