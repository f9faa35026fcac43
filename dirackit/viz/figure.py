"""The figure every dirackit plot returns: a plain matplotlib Figure that notebooks can show.

Plots are built on bare ``Figure`` objects (no pyplot global state, nothing drawn twice). IPython,
however, only knows how to display a bare Figure after ``%matplotlib inline`` has registered a
formatter for it; otherwise a cell prints ``<Figure size ...>``. ``_repr_png_`` makes the figure
display itself as an image in any notebook, executed by a person or by papermill.
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["NotebookFigure"]


class NotebookFigure(Figure):
    """A ``matplotlib.figure.Figure`` that renders as a PNG in Jupyter."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
