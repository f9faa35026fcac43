"""Interactive training curves with bokeh: hover for values, click a legend entry to hide a run.

The WRN authors plotted their JSON logs with bokeh (``notebooks/visualize.ipynb``); this reads
dirackit's run logs (one or many, e.g. ``dk.load_runs("runs/")``) the same way. ``show_bokeh``
displays a layout in a notebook with BokehJS inline, so it renders offline.
"""
from __future__ import annotations

from typing import Iterable

from ..runlog import RunLog
from .curves import labelled_frames
from .figure import log_tick_values

__all__ = ["bokeh_curves", "show_bokeh"]


def bokeh_curves(runs: RunLog | Iterable[RunLog] | "object", log_loss: bool = True, width: int = 480,
                 height: int = 400):
    """Loss and error (%) against epoch, train dashed and test solid, one colour per run.

    Returns a bokeh ``row`` of two figures sharing the epoch axis; each line carries its run, split,
    epoch and value for the hover tool, and the legends hide a run's lines on click.
    """
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource, FixedTicker, HoverTool
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure

    frames = labelled_frames(runs)
    if not frames:
        raise ValueError("no runs to plot: pass a RunLog, a list of them or dk.load_runs(folder)")
    loss = figure(title="loss", x_axis_label="epoch", width=width, height=height,
                  y_axis_label="cross-entropy (log scale)" if log_loss else "cross-entropy",
                  y_axis_type="log" if log_loss else "linear", tools="pan,box_zoom,wheel_zoom,reset,save")
    error = figure(title="error (%)", x_axis_label="epoch", y_axis_label="error (%)", width=width, height=height,
                   x_range=loss.x_range, tools="pan,box_zoom,wheel_zoom,reset,save")
    for i, (label, frame) in enumerate(frames):
        color = Category10_10[i % 10]
        for split, dash in (("train", "dashed"), ("test", "solid")):
            source = ColumnDataSource({"epoch": frame["epoch"].tolist(), "loss": frame[f"{split}_loss"].tolist(),
                                       "error": (100 * (1 - frame[f"{split}_acc"])).tolist(),
                                       "run": [label] * len(frame), "split": [split] * len(frame)})
            for fig, column in ((loss, "loss"), (error, "error")):
                fig.line("epoch", column, source=source, color=color, line_dash=dash, line_width=2,
                         legend_label=label)
    for fig, column, unit in ((loss, "loss", ""), (error, "error", " %")):
        fig.add_tools(HoverTool(tooltips=[("run", "@run"), ("split", "@split"), ("epoch", "@epoch"),
                                          (column, f"@{column}{{0.000}}{unit}")]))
        legend = fig.legend[0]
        fig.add_layout(legend, "below")  # under the plot, never over a curve
        legend.orientation, legend.ncols = "horizontal", min(len(frames), 3)
        legend.click_policy = "hide"
        legend.label_text_font_size = "8pt"
        legend.title = "dashed train, solid test; click a run to hide it"
        legend.title_text_font_size = "8pt"
        fig.xaxis.ticker.min_interval = 1  # whole epochs only
    if log_loss:  # bokeh's own log ticks crowd (5, 10, 15... near the top); the matplotlib plots' rule
        losses = [v for _, frame in frames for split in ("train", "test") for v in frame[f"{split}_loss"] if v > 0]
        if losses:
            loss.yaxis.ticker = FixedTicker(ticks=log_tick_values(min(losses), max(losses)))
    return row(loss, error)


def show_bokeh(layout) -> None:
    """Show a bokeh layout in a notebook with BokehJS inline (no CDN needed to render it)."""
    from bokeh.io import output_notebook, show
    from bokeh.resources import INLINE
    output_notebook(resources=INLINE, hide_banner=True)
    show(layout)
