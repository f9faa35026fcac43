"""The comparison notebook's plot: what folding buys at inference, per run."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .figure import NotebookFigure, legend_outside

__all__ = ["plot_fold_speed"]


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
