"""Depth versus width: a network's size among the Wide ResNet paper's published CIFAR results."""
from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure

from ..explore import PAPER_RESULTS
from .figure import NotebookFigure, legend_outside, log_scale

__all__ = ["plot_paper_configs"]


def plot_paper_configs(chosen: Mapping[str, int] | None = None, dataset: str = "c10",
                       fig: Figure | None = None) -> Figure:
    """Published test error against parameters (thin-deep and wide nets apart), with a vertical
    line at the parameter count of each chosen network, ``{"WRN-16-4": 2_748_890}``."""
    if dataset not in ("c10", "c100"):
        raise ValueError(f"dataset is 'c10' or 'c100' (the paper's CIFAR-10 and CIFAR-100 columns), got {dataset!r}")
    fig = fig or NotebookFigure(figsize=(6.4, 4))
    fig.clear()
    ax = fig.subplots()
    for family, marker, color in (("thin", "o", "C0"), ("wide", "s", "C3")):
        rows = [r for r in PAPER_RESULTS if r["family"] == family and r[dataset] is not None]
        ax.scatter([r["params_m"] for r in rows], [r[dataset] for r in rows], marker=marker, color=color, s=50,
                   label="thin and deep (ResNet)" if family == "thin" else "wide (WRN)")
        for r in rows:
            ax.annotate(r["label"], (r["params_m"], r[dataset]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for i, (label, params) in enumerate((chosen or {}).items()):
        ax.axvline(params / 1e6, color=f"C{i + 4}", linestyle="--", linewidth=1.2, label=f"{label}: {params / 1e6:.2f} M")
    ax.set(ylabel=f"test error on CIFAR-{dataset[1:]} (%)", title="Zagoruyko & Komodakis 2016: published errors")
    log_scale(ax, "x", "parameters (millions)")
    legend_outside(fig, ax)
    return fig
