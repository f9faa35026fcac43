"""Tables as a notebook shows them: numbers rounded to what they support.

A pandas column prints every value with the digits of its longest one (``832.366670``; in HTML a
fold error becomes ``4.600000e-07``), and a fold error carries three digits where its first two are
all it measures. ``rounded`` returns a copy for reading, its floats written out with the digits they
support; the computed frame keeps full precision for any further computation.
"""
from __future__ import annotations

import math

__all__ = ["rounded"]


def significant(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits: ``832``, ``0.106``, ``1.10``, ``4.6e-07``."""
    if not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{round(value, digits - 1 - magnitude):.0f}"
    if magnitude >= -3:
        return f"{value:.{digits - 1 - magnitude}f}"
    return f"{value:.{digits - 1}e}"


def rounded(frame, digits: int = 3, error_digits: int = 2):
    """A copy of ``frame`` for display, every float written with ``digits`` significant digits
    (accuracies of a few thousand test images, speeds timed over a few steps), or ``error_digits``
    in columns whose name holds "error" (numerical errors, meaningful to their magnitude)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind == "f":
            keep = error_digits if "error" in str(column) else digits
            out[column] = [significant(v, keep) for v in out[column]]
    return out
