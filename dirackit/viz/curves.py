"""Training curves: live in a notebook during training, static for executed notebooks and docs.

The live view is one matplotlib figure shown through an IPython display handle and redrawn in place
each epoch, so the saved notebook keeps exactly the final picture (no widget state, no browser).
"""
from __future__ import annotations

from typing import Iterable

from matplotlib.figure import Figure

from ..runlog import RunLog
from .figure import NotebookFigure

__all__ = ["LiveCurves", "plot_curves", "labelled_frames"]


def labelled_frames(runs) -> list[tuple[str, "object"]]:
    """(label, per-epoch DataFrame) pairs from a RunLog, a DataFrame (``load_runs`` output) or a list."""
    import pandas as pd
    if isinstance(runs, RunLog):
        return [(runs.header.get("model", {}).get("name", "run"), runs.frame())]
    if isinstance(runs, pd.DataFrame):
        if "run" not in runs:
            return [("run", runs)]
        return [(f"{g['model'].iloc[0]} ({name})" if "model" in g else str(name), g)
                for name, g in runs.groupby("run", sort=False)]
    return [pair for run in runs for pair in labelled_frames(run)]


def plot_curves(runs: RunLog | Iterable[RunLog] | "object", fig: Figure | None = None) -> Figure:
    """Loss and error (%) against epoch, train dashed and test solid, one colour per run.

    Points carry markers, so a run of one epoch (the explorer's Train button) still shows; the log
    loss axis gets plain tick labels, as its range is often well under a decade.
    """
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    fig = fig or NotebookFigure(figsize=(10, 3.6))
    fig.clear()
    ax_loss, ax_err = fig.subplots(1, 2)
    frames = labelled_frames(runs)
    for i, (label, frame) in enumerate(frames):
        color = f"C{i % 10}"
        for split, style in (("train", "--"), ("test", "-")):
            ax_loss.plot(frame["epoch"], frame[f"{split}_loss"], style, marker=".", color=color,
                         label=f"{label} {split}")
            ax_err.plot(frame["epoch"], 100 * (1 - frame[f"{split}_acc"]), style, marker=".", color=color,
                        label=f"{label} {split}")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="error")
    last = max((frame["epoch"].max() for _, frame in frames), default=1)
    for ax in (ax_loss, ax_err):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, last + 0.5)
    for axis_formatter in (ax_loss.yaxis.set_major_formatter, ax_loss.yaxis.set_minor_formatter):
        axis_formatter(ScalarFormatter())
    ax_err.legend(fontsize="small")
    fig.tight_layout()
    return fig


class LiveCurves:
    """A ``fit`` callback that redraws the curves in place after every epoch.

    Outside IPython it does nothing (``fit`` already prints one line per epoch).
    """

    def __init__(self) -> None:
        self.fig = NotebookFigure(figsize=(10, 3.6))
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
