"""How sure is a test accuracy, and is one network really better than another on the same test set?

A course that compares networks on 1,000 test images must say when a difference is noise: one
standard error of an accuracy near 50% is 1.6 points there, and 0.5 points on CIFAR's 10,000.

- ``accuracy_interval``: the 95% Wilson score interval of one accuracy (it stays inside [0, 1] and
  behaves near 0% and 100%, where the textbook ``p +- 1.96 se`` does not).
- ``compare_paired``: two networks evaluated on the same images. Only the images on which they
  disagree carry information, so the exact McNemar test (a binomial test on the disagreements)
  decides, and the 95% interval of the accuracy difference is its exact (Clopper-Pearson) dual:
  the interval excludes 0 exactly when the test rejects at 5%, so a verdict never contradicts the
  interval printed beside it.
- ``compare_unpaired``: the fallback when per-image results are missing or the test sets differ
  (independent proportions, Wald interval); wider, so it shows less.

A ``Comparison`` carries the verdict of the claim "a is more accurate than b": ``shown`` (the whole
interval is above 0), ``contradicted here`` (the whole interval is below 0) or ``within noise at
this size``. Verdicts are computed, never typed; ``str()`` prints one line with the interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["SHOWN", "NOISE", "CONTRADICTED", "accuracy_interval", "Comparison", "compare_paired",
           "compare_unpaired", "pack_correct", "unpack_correct"]

SHOWN, NOISE, CONTRADICTED = "shown", "within noise at this size", "contradicted here"
Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def accuracy_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of ``correct`` out of ``total`` test images."""
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total >= 1, got {correct} of {total}")
    from scipy.stats import binomtest
    ci = binomtest(int(correct), int(total)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Comparison:
    """The claim "``a`` is more accurate than ``b``" tested on a test set of ``n`` images."""

    a: str
    b: str
    acc_a: float
    acc_b: float
    n: int
    low: float                 # 95% interval of acc_a - acc_b
    high: float
    p_value: float             # two-sided; McNemar's exact test when paired
    paired: bool
    a_only: int | None = None  # images only a got right (paired)
    b_only: int | None = None  # images only b got right (paired)

    @property
    def difference(self) -> float:
        return self.acc_a - self.acc_b

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return SHOWN
        if self.high < 0:
            return CONTRADICTED
        return NOISE

    def as_dict(self) -> dict:
        """JSON-able, for results files: the fields plus the difference and the verdict."""
        return {**self.__dict__, "difference": self.difference, "verdict": self.verdict}

    def __str__(self) -> str:
        test = "McNemar" if self.paired else "unpaired"
        return (f"{self.a} vs {self.b}: {100 * self.acc_a:.1f}% vs {100 * self.acc_b:.1f}%, difference "
                f"{100 * self.difference:+.1f} points (95% CI {100 * self.low:+.1f} to {100 * self.high:+.1f}; "
                f"{test} p = {self.p_value:.2g}; {self.n:,} test images) -> {self.verdict}")


def compare_paired(correct_a: Sequence[bool], correct_b: Sequence[bool], a: str = "a", b: str = "b",
                   confidence: float = 0.95) -> Comparison:
    """Compare two networks from their per-image correctness on the same test images, in the same order."""
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape or ca.ndim != 1 or len(ca) == 0:
        raise ValueError(f"per-image results must be two equal, non-empty 1-D sequences; got shapes "
                         f"{ca.shape} and {cb.shape} (were both networks evaluated on the same test images?)")
    n, a_only, b_only = len(ca), int((ca & ~cb).sum()), int((~ca & cb).sum())
    disagree = a_only + b_only
    if disagree == 0:
        low = high = 0.0
        p_value = 1.0
    else:
        from scipy.stats import binomtest
        test = binomtest(a_only, disagree, 0.5)
        ci = test.proportion_ci(confidence, method="exact")  # of the share of disagreements a wins
        low, high = disagree * (2 * ci.low - 1) / n, disagree * (2 * ci.high - 1) / n
        p_value = float(test.pvalue)
    return Comparison(a, b, float(ca.mean()), float(cb.mean()), n, float(low), float(high), p_value, True,
                      a_only, b_only)


def compare_unpaired(acc_a: float, n_a: int, acc_b: float, n_b: int, a: str = "a", b: str = "b") -> Comparison:
    """Compare two accuracies measured on different (or unknown) test images, as independent proportions."""
    for acc, n in ((acc_a, n_a), (acc_b, n_b)):
        if n < 1 or not 0 <= acc <= 1:
            raise ValueError(f"need an accuracy in [0, 1] over n >= 1 images, got {acc} over {n}")
    se = math.sqrt(acc_a * (1 - acc_a) / n_a + acc_b * (1 - acc_b) / n_b)
    diff = acc_a - acc_b
    p_value = 1.0 if se == 0 else math.erfc(abs(diff) / se / math.sqrt(2))
    return Comparison(a, b, float(acc_a), float(acc_b), min(n_a, n_b), diff - Z95 * se, diff + Z95 * se,
                      p_value, False)


def pack_correct(correct) -> str:
    """Per-image correctness as a hex string (one bit an image): 10,000 images take 2,500 characters."""
    bits = np.packbits(np.asarray(correct, dtype=bool))
    return bits.tobytes().hex()


def unpack_correct(hex_bits: str, n: int) -> np.ndarray:
    """The inverse of ``pack_correct`` for ``n`` images."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))
    if len(bits) < n or bits[n:].any():
        raise ValueError(f"the packed correctness holds {len(bits)} bits, not the {n} images expected")
    return bits[:n].astype(bool)
