"""What a run shows about a paper's claim: one finding per claim, its verdict computed, never typed.

A ``Finding`` joins the claim (in the paper's words, as tested here), the evidence of this run (a
``dirackit.stats.Comparison``, or an exact check such as a fold error) and the paper's own figure.
``report`` prints one block per finding and returns JSON-able rows for a notebook's results.json;
the course's closing notes and index read those rows.

Verdicts: ``shown`` and ``contradicted here`` only when the 95% interval excludes no difference;
``within noise at this size`` otherwise, with the interval; an exact check is ``shown`` when it holds
within its tolerance and ``contradicted here`` when it does not.
"""
from __future__ import annotations

from dataclasses import dataclass

from .stats import CONTRADICTED, NOISE, SHOWN, Comparison

__all__ = ["Finding", "compared", "exact", "report"]


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str
    evidence: str            # this run's numbers, with their interval
    paper: str = ""          # the paper's figure for the same claim, with its source
    note: str = ""           # why a short run cannot show more, or what would
    low: float | None = None   # the 95% interval the verdict comes from (None for an exact check)
    high: float | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        lines = [f"{self.claim}: {self.verdict.upper()}", f"  this run: {self.evidence}"]
        if self.paper:
            lines.append(f"  the paper: {self.paper}")
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def compared(claim: str, comparison: Comparison, paper: str = "", note: str | None = None) -> Finding:
    """A claim that ``comparison.a`` is more accurate than ``comparison.b``. Within noise, the note
    says by default that this size cannot decide it and the paper's figure stands alone."""
    if note is None:
        note = ("the interval holds zero: this run is too small or too short to decide; the paper's figure "
                "above comes from full networks trained to the end" if comparison.verdict == NOISE else "")
    return Finding(claim, comparison.verdict, str(comparison), paper, note, comparison.low, comparison.high)


def exact(claim: str, value: float, tolerance: float, what: str, paper: str = "") -> Finding:
    """A claim checked exactly, e.g. "the folded network computes the same function": ``value`` (an
    error) must be at most ``tolerance``."""
    holds = value <= tolerance
    return Finding(claim, SHOWN if holds else CONTRADICTED, f"{what} = {value:.2g} (tolerance {tolerance:g})", paper)


def report(findings: list[Finding]) -> list[dict]:
    """Print every finding and return them as rows for results.json (``{"claims": report(...)}``)."""
    for finding in findings:
        print(finding, end="\n\n")
    return [f.as_dict() for f in findings]
