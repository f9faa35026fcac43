"""Tables as a notebook shows them: numbers rounded to what they support.

A pandas column prints every value with the digits of its longest one (``832.366670``), and a fold
error carries three digits where its first two are all it measures. ``rounded`` returns a copy for
display; the computed frame keeps full precision.
"""
from __future__ import annotations

import math

__all__ = ["rounded"]


def _significant(value, digits: int):
    if not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def rounded(frame, digits: int = 3, error_digits: int = 2):
    """A copy of ``frame`` with every float rounded to ``digits`` significant digits (accuracies of
    a few thousand test images, speeds timed over a few steps), and to ``error_digits`` in columns
    whose name holds "error" (numerical errors such as a fold's, meaningful to their magnitude)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind == "f":
            keep = error_digits if "error" in str(column) else digits
            out[column] = out[column].map(lambda v: _significant(v, keep))
    return out
