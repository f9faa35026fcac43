"""The figure every dirackit plot returns, a plain matplotlib Figure that notebooks can show, and the
two rules every plot follows: log axes say so and keep readable ticks, legends stay off the data.

Plots are built on bare ``Figure`` objects (no pyplot global state, nothing drawn twice). IPython,
however, only knows how to display a bare Figure after ``%matplotlib inline`` has registered a
formatter for it; otherwise a cell prints ``<Figure size ...>``. ``_repr_png_`` makes the figure
display itself as an image in any notebook, executed by a person or by papermill.
"""
from __future__ import annotations

import io
import math

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

__all__ = ["NotebookFigure", "log_scale", "log_tick_values", "legend_outside"]


class NotebookFigure(Figure):
    """A ``matplotlib.figure.Figure`` that renders as a PNG in Jupyter."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def log_scale(ax: Axes, axis: str = "y", label: str | None = None) -> None:
    """Put ``axis`` on a log scale that says so in its label, with few plain tick labels.

    matplotlib's defaults label a log axis spanning less than a decade with minor ticks such as
    ``9×10⁰``, and plain formatters on every minor tick overlap when the data span many decades. Here:
    within a decade, about four evenly spaced plain values; up to three decades, 1-2-5 steps; beyond,
    one label per decade. Call it after plotting, as it reads the data's range.
    """
    ax.set(**{f"{axis}scale": "log"})
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(_log_locator(*sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())
    label = target.get_label_text() if label is None else label
    if label.endswith(")"):  # "parameters (millions)" -> "parameters (millions, log scale)"
        target.set_label_text(f"{label[:-1]}, log scale)")
    else:
        target.set_label_text(f"{label} (log scale)" if label else "log scale")


def _log_locator(low: float, high: float):
    decades = math.log10(high / low) if low > 0 else math.inf
    if decades < 1:
        return MaxNLocator(nbins=4, min_n_ticks=3)
    return LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,))


def log_tick_values(low: float, high: float) -> list[float]:
    """The tick values ``log_scale`` would place on a log axis spanning ``low`` to ``high`` (for
    plots drawn by other libraries, such as the bokeh curves)."""
    return [float(f"{v:.12g}") for v in _log_locator(low, high).tick_values(low, high) if low <= v <= high]


def legend_outside(fig: Figure, ax: Axes | None = None, where: str = "right", **options) -> Legend | None:
    """The legend of ``ax`` (default: the figure's first axes) outside every axes, so it never covers
    data: to the right of the figure, or ``where="below"`` it; constrained layout makes the room."""
    handles, labels = (ax or fig.axes[0]).get_legend_handles_labels()
    if not handles:
        return None
    fig.set_layout_engine("constrained")
    place = {"right": "outside right upper", "below": "outside lower center"}[where]
    if where == "below":
        options.setdefault("ncols", min(len(handles), 4))
    return fig.legend(handles, labels, loc=place, fontsize="small", frameon=False, **options)
