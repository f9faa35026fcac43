"""The comparison notebook's plots: what folding buys at inference, and accuracy against what a
network costs once deployed."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter, PercentFormatter

from .figure import NotebookFigure, legend_outside

__all__ = ["plot_fold_speed", "plot_accuracy_vs_deployed_cost"]


def plot_fold_speed(table, fig: Figure | None = None) -> Figure:
    """Inference images/s of each run before and after ``dirackit.fold``, side by side; ``table``
    has columns ``model``, ``unfolded_img_s`` and ``folded_img_s`` (``dk.compare.deploy_speed``)."""
    fig = fig or NotebookFigure(figsize=(max(6.0, 0.9 * len(table) + 2), 3.8))
    fig.clear()
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["unfolded_img_s"], 0.4, label="as trained")
    ax.bar(x + 0.2, table["folded_img_s"], 0.4, label="folded")
    ax.set_xticks(x, labels=list(table["model"]), rotation=30, ha="right", rotation_mode="anchor")
    ax.set(ylabel="inference images/s", title="inference speed before and after folding")
    legend_outside(fig, ax)
    return fig


def plot_accuracy_vs_deployed_cost(table, fig: Figure | None = None) -> Figure:
    """Test accuracy (with its 95% interval) against multiply-adds per image of the deployed, folded
    network, one point per run; a hollow marker joined to it shows the MACs as trained, where folding
    changes them (DBB's branches, DGConv's dense masked convs). ``table`` has columns ``model``,
    ``test_acc``, ``acc_low``, ``acc_high``, ``macs`` and ``deployed_macs`` (``dk.compare``)."""
    fig = fig or NotebookFigure(figsize=(7, 4.2))
    fig.clear()
    ax = fig.subplots()
    for i, row in enumerate(table.itertuples()):
        color = f"C{i % 10}"
        spread = [[row.test_acc - row.acc_low], [row.acc_high - row.test_acc]]
        ax.errorbar([row.deployed_macs], [row.test_acc], yerr=spread, fmt="o", color=color, capsize=3, label=row.model)
        if row.macs != row.deployed_macs:
            ax.plot([row.macs, row.deployed_macs], [row.test_acc, row.test_acc], ":", color=color)
            ax.plot([row.macs], [row.test_acc], "o", mfc="none", color=color)
    costs = list(table["deployed_macs"]) + list(table["macs"])
    wide_range = len(costs) > 1 and max(costs) > 10 * min(costs)
    ax.set(xlabel="multiply-adds per image, deployed (hollow: as trained)", ylabel="test accuracy (95% interval)",
           xscale="log" if wide_range else "linear", title="accuracy against the deployed cost")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    legend_outside(fig, ax)
    return fig
