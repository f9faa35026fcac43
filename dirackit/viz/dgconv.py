"""What a DGConv learns: its relationship matrix U, the masked weight, and the groups over training.

U is a 0/1 matrix over (output, input) channels; in natural channel order a grouping whose zero
gates do not all come first looks interleaved, and reordering the channels by group (what
``fold()`` does) turns it block-diagonal. The run log holds each layer's groups and zeta / o per
epoch (``log_state`` of a G-ResNeXt), which the last plots read.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter

from ..layers import DGConv2d, gate_mask
from ..runlog import RunLog
from .figure import NotebookFigure, legend_outside, log_scale

__all__ = ["plot_gate_masks", "plot_masked_weight", "plot_group_history", "plot_complexity",
           "plot_accuracy_vs_cost"]


def _pattern_mask(pattern: str) -> torch.Tensor:
    if not pattern or set(pattern) - {"0", "1"}:
        raise ValueError(f"a gate pattern is a string of 0/1 such as '0101', got {pattern!r}")
    return gate_mask(torch.tensor([float(c) for c in pattern]))


def plot_gate_masks(patterns: Sequence[str] | Mapping[str, str], fig: Figure | None = None) -> Figure:
    """U for each gate pattern (1 = dense factor), e.g. ``{"dense": "111", "grouped": "001"}``."""
    named = dict(patterns) if isinstance(patterns, Mapping) else {p: p for p in patterns}
    fig = fig or NotebookFigure(figsize=(3.2 * len(named), 3.4))
    fig.clear()
    axes = np.atleast_1d(fig.subplots(1, len(named)))
    for ax, (title, pattern) in zip(axes, named.items()):
        groups = 2 ** pattern.count("0")
        ax.imshow(_pattern_mask(pattern).numpy(), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=f"{title}\ngates {pattern}: {groups} group{'s' * (groups > 1)}", xlabel="input channel",
               ylabel="output channel")
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_masked_weight(layer: DGConv2d, fig: Figure | None = None) -> Figure:
    """U, then mean |W * U| over the taps in natural channel order and in group order."""
    if not isinstance(layer, DGConv2d):
        raise TypeError(f"expected a DGConv2d (e.g. model.dg_convs()[0][1]), got {type(layer).__name__}")
    masked = layer.masked_weight().abs().mean((2, 3)).float().cpu()
    order = layer.channel_order().cpu()
    panels = [(layer.mask().cpu(), "U", "Greys"), (masked, "mean |W * U| over taps", "viridis"),
              (masked[order][:, order], "same, channels in group order", "viridis")]
    fig = fig or NotebookFigure(figsize=(12, 3.8))
    fig.clear()
    for ax, (image, title, cmap) in zip(fig.subplots(1, 3), panels):
        shown = ax.imshow(image.numpy(), cmap=cmap, interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, label="mask value (0 or 1)" if title == "U" else "mean |weight|")
        ax.set(title=title, xlabel="input channel", ylabel="output channel")
    fig.suptitle(f"gates {layer.gate_pattern}: {layer.learned_groups} groups of "
                 f"{layer.in_channels // layer.learned_groups} channels")
    fig.tight_layout()
    return fig


def _frame(run: RunLog | "object", column: str):
    frame = run.frame() if isinstance(run, RunLog) else run
    if column not in frame:
        raise ValueError(f"the run log has no column {column!r}: it is not from a G-ResNeXt "
                         "(g-resnext-d-cxdd logs dg_groups, dg_gates and zeta_ratio every epoch)")
    return frame


def plot_group_history(run: RunLog | "object", fig: Figure | None = None) -> Figure:
    """Groups of every DGConv (rows, input to output) at the end of every epoch (columns)."""
    frame = _frame(run, "dg_groups")
    groups = np.array(frame["dg_groups"].tolist(), dtype=float).T  # layers x epochs
    fig = fig or NotebookFigure(figsize=(max(5, 0.5 * groups.shape[1] + 3), max(3, 0.35 * groups.shape[0] + 1.5)))
    fig.clear()
    ax = fig.subplots()
    image = ax.imshow(np.log2(groups), aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(frame["epoch"].min() - 0.5, frame["epoch"].max() + 0.5, groups.shape[0] - 0.5, -0.5))
    bar = fig.colorbar(image, ax=ax, label="groups (colour on a log2 scale)")
    ticks = np.arange(np.log2(groups).min(), np.log2(groups).max() + 1)
    bar.set_ticks(ticks, labels=[f"{2 ** t:.0f}" for t in ticks])
    if groups.size <= 400:
        bright = np.log2(groups) > (ticks[0] + ticks[-1]) / 2
        for (layer, col), g in np.ndenumerate(groups):
            ax.text(frame["epoch"].iloc[col], layer, f"{g:.0f}", ha="center", va="center", fontsize=7,
                    color="k" if bright[layer, col] else "w")
    ax.set_yticks(range(groups.shape[0]), labels=[str(i + 1) for i in range(groups.shape[0])])
    ax.set(xlabel="epoch", ylabel="DGConv layer (input to output)", title="learned groups per layer")
    fig.tight_layout()
    return fig


def plot_complexity(runs: Mapping[str, RunLog | "object"] | RunLog, fig: Figure | None = None) -> Figure:
    """zeta / o (connections used over the budget) against epoch; the budget is the line at 1."""
    runs = {"run": runs} if isinstance(runs, RunLog) else dict(runs)
    fig = fig or NotebookFigure(figsize=(6, 3.6))
    fig.clear()
    ax = fig.subplots()
    for name, run in runs.items():
        frame = _frame(run, "zeta_ratio")
        ax.plot(frame["epoch"], frame["zeta_ratio"], marker="o", label=name)
    ax.axhline(1, color="k", linestyle="--", linewidth=1, label="budget o")
    ax.set(xlabel="epoch", title="complexity against the budget")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    log_scale(ax, "y", "zeta / o")
    legend_outside(fig, ax)
    return fig


def plot_accuracy_vs_cost(points: Mapping[str, tuple[float, float]], cost: str = "multiply-adds",
                          fig: Figure | None = None) -> Figure:
    """Test accuracy against cost, one labelled point per model: ``{"name": (cost, accuracy)}``."""
    fig = fig or NotebookFigure(figsize=(6, 4))
    fig.clear()
    ax = fig.subplots()
    for i, (name, (c, acc)) in enumerate(points.items()):
        ax.scatter([c], [acc], s=60, color=f"C{i}", label=name)
    costs = [c for c, _ in points.values()]
    wide_range = len(costs) > 1 and max(costs) > 10 * min(costs)  # a log axis labels nothing within a decade
    ax.set(xlabel=cost, ylabel="test accuracy", title=f"accuracy against {cost}")
    if wide_range:
        log_scale(ax, "x")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    legend_outside(fig, ax)
    return fig
