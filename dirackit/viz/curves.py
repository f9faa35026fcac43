"""Training curves: live in a notebook during training, static for executed notebooks and docs.

The live view is one matplotlib figure shown through an IPython display handle and redrawn in place
each epoch, so the saved notebook keeps exactly the final picture (no widget state, no browser).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from matplotlib.figure import Figure

from ..runlog import RunLog
from .figure import NotebookFigure, log_scale

__all__ = ["LiveCurves", "plot_curves", "labelled_frames", "run_labels"]


def run_labels(names: list[str], folders: list[str | os.PathLike | None]) -> list[str]:
    """Plot labels for runs: each model's name, and where two runs share one, the part of their run
    folders that tells them apart ("wrn-16-4 (seed1)"), else their position ("wrn-16-4 #2")."""
    labels = list(names)
    for name in dict.fromkeys(names):
        same = [i for i, n in enumerate(names) if n == name]
        if len(same) < 2:
            continue
        parts = [Path(folders[i]).parts if folders[i] else () for i in same]
        head = len(os.path.commonprefix(parts))
        tail = len(os.path.commonprefix([p[head:][::-1] for p in parts]))
        differ = ["/".join(p[head:len(p) - tail]) for p in parts]
        if all(differ) and len(set(differ)) == len(differ):
            for i, part in zip(same, differ):
                labels[i] = f"{name} ({part})"
        else:
            for k, i in enumerate(same, start=1):
                labels[i] = f"{name} #{k}"
    return labels


def labelled_frames(runs) -> list[tuple[str, "object"]]:
    """(label, per-epoch DataFrame) pairs from a RunLog, a DataFrame (``load_runs`` output) or a list
    of either; labels are model names, told apart by ``run_labels`` where two runs share one."""
    import pandas as pd

    def runs_of(item) -> list[tuple[str, str | None, "object"]]:  # (model name, run folder, frame)
        if isinstance(item, RunLog):
            return [(item.header.get("model", {}).get("name", "run"), item.dir, item.frame())]
        if isinstance(item, pd.DataFrame):
            if "run" not in item:
                return [("run", None, item)]
            return [(str(g["model"].iloc[0]) if "model" in g else str(folder), str(folder), g)
                    for folder, g in item.groupby("run", sort=False)]
        return [entry for sub in item for entry in runs_of(sub)]

    found = runs_of(runs)
    labels = run_labels([name for name, _, _ in found], [folder for _, folder, _ in found])
    return [(label, frame) for label, (_, _, frame) in zip(labels, found)]


def plot_curves(runs: RunLog | Iterable[RunLog] | "object", fig: Figure | None = None) -> Figure:
    """Loss and error (%) against epoch, train dashed and test solid, one colour per run.

    Points carry markers, so a run of one epoch (the explorer's Train button) still shows; the legend
    sits below both panels, one entry per run and one per line style.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = fig or NotebookFigure(figsize=(10, 3.8))
    fig.clear()
    ax_loss, ax_err = fig.subplots(1, 2)
    frames = labelled_frames(runs)
    handles = []
    for i, (label, frame) in enumerate(frames):
        color = f"C{i % 10}"
        for split, style in (("train", "--"), ("test", "-")):
            ax_loss.plot(frame["epoch"], frame[f"{split}_loss"], style, marker=".", color=color)
            ax_err.plot(frame["epoch"], 100 * (1 - frame[f"{split}_acc"]), style, marker=".", color=color)
        handles.append(Line2D([], [], color=color, marker=".", label=label))
    handles += [Line2D([], [], color="0.4", linestyle="--", label="train"),
                Line2D([], [], color="0.4", linestyle="-", label="test")]
    ax_loss.set(xlabel="epoch", title="loss")
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="error")
    last = max((frame["epoch"].max() for _, frame in frames), default=1)
    for ax in (ax_loss, ax_err):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, last + 0.5)
    log_scale(ax_loss, "y", "cross-entropy")
    fig.set_layout_engine("constrained")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small",
               frameon=False)
    return fig


class LiveCurves:
    """A ``fit`` callback that redraws the curves in place after every epoch.

    Outside IPython it does nothing (``fit`` already prints one line per epoch).
    """

    def __init__(self) -> None:
        self.fig = NotebookFigure(figsize=(10, 3.8))
        self.handle = None

    def __call__(self, row: dict, run: RunLog) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        plot_curves(run, self.fig)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
