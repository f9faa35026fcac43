"""Checks of a notebook's results.json: invariants always, measured bounds only where they apply.

A baseline file ``ci/baselines/<stem>.json`` holds

- ``invariants``: bounds true under any valid parameters (fold errors, exact conversions);
- one section per profile (``quick``, ``full``, ``quick-cifar100``...): the ``settings`` the bounds
  were measured with (the notebook's parameters, defaults and injections merged) and the ``bounds``
  themselves: parameter counts, accuracy floors, thresholds that hold only for those settings.

Whatever the parameters, every number in results.json must be finite and every claim's verdict
must agree with the interval beside it (``dirackit.claims``). A section's bounds apply only when
the run's settings are the ones it stores; otherwise they are skipped, and the note says which
setting differs. Bounds are ``{"min": x}``, ``{"max": y}`` (both allowed) or ``{"equals": v}``.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any

BOUND_KEYS = {"min", "max", "equals"}
# Parameters that change where or how visibly a notebook runs, not what it computes.
NOT_SETTINGS = frozenset({"out_dir", "progress", "data_source", "device", "dataset"})


@dataclass
class BaselineCheck:
    """Problems fail the notebook; the note says what was checked and what was skipped."""

    problems: list[str] = field(default_factory=list)
    note: str = ""


def literal_defaults(inspected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The parameters cell's defaults as values, from ``papermill.inspect_notebook``'s source strings."""
    values = {}
    for name, info in inspected.items():
        try:
            values[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            values[name] = info["default"]  # not a literal: compared as its source text
    return values


def run_settings(defaults: dict[str, Any], injected: dict[str, Any]) -> dict[str, Any]:
    """What a run computes with: the defaults overridden by the injected values, minus ``NOT_SETTINGS``."""
    return {k: v for k, v in {**defaults, **injected}.items() if k not in NOT_SETTINGS}


def settings_difference(measured: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``name=measured (this run: now)`` for every setting that differs."""
    return [f"{k}={measured.get(k)!r} (this run: {now.get(k)!r})" for k in sorted(set(measured) | set(now))
            if measured.get(k) != now.get(k)]


def check_bounds(results: dict[str, Any], bounds: dict[str, dict[str, Any]]) -> list[str]:
    """Compare results with bounds ``{"key": {"min": x, "max": y} | {"equals": v}}``."""
    problems = []
    for key, bound in bounds.items():
        extra = set(bound) - BOUND_KEYS
        if not bound or extra:
            problems.append(f"baseline for {key} must use min, max or equals, got {sorted(bound)}")
            continue
        if key not in results:
            problems.append(f"results.json has no {key}")
            continue
        value = results[key]
        if "equals" in bound and value != bound["equals"]:
            problems.append(f"{key} = {value!r}, expected {bound['equals']!r}")
        if {"min", "max"} & set(bound):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                problems.append(f"{key} = {value!r} is not a number")
                continue
            if "min" in bound and value < bound["min"]:
                problems.append(f"{key} = {value:.6g} < min {bound['min']}")
            if "max" in bound and value > bound["max"]:
                problems.append(f"{key} = {value:.6g} > max {bound['max']}")
    return problems


def non_finite(value: Any, where: str = "results") -> list[str]:
    """Paths of NaN or infinite numbers anywhere in a JSON value (a loss that diverged, say)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where} = {value}"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in non_finite(v, f"{where}[{i}]")]
    return []


def inconsistent_claims(claims: Any) -> list[str]:
    """Claims whose verdict disagrees with their interval: shown needs low > 0, contradicted high < 0."""
    if claims is None:
        return []
    if not isinstance(claims, list):
        return ["results.json's claims must be a list of findings"]
    problems = []
    for row in claims:
        if not isinstance(row, dict) or "verdict" not in row or "claim" not in row:
            problems.append(f"a claim without claim/verdict: {row!r}")
            continue
        low, high, verdict = row.get("low"), row.get("high"), row["verdict"]
        if low is None or high is None:
            continue  # an exact check: its verdict comes from a tolerance, not an interval
        expected = ("shown" if low > 0 else "contradicted here" if high < 0 else "within noise at this size")
        if verdict != expected:
            problems.append(f"claim {row['claim']!r} says {verdict!r} but its interval [{low:.4g}, {high:.4g}] "
                            f"means {expected!r}")
    return problems


def check_baseline(results: dict[str, Any], baseline: dict[str, Any], section: str,
                   settings: dict[str, Any], required: bool = True) -> BaselineCheck:
    """Invariants always; ``baseline[section]``'s bounds when its settings are ``settings``. A missing
    section fails when ``required`` (CIFAR-10's quick and full), else it is noted."""
    check = BaselineCheck()
    check.problems += non_finite(results)
    check.problems += inconsistent_claims(results.get("claims"))
    check.problems += check_bounds(results, baseline.get("invariants", {}))
    measured = baseline.get(section)
    if measured is None:
        if required:
            check.problems.append(f"the baseline has no {section!r} section")
        else:
            check.note = f"{section} bounds not checked: the baseline has no {section!r} section"
        return check
    if set(measured) != {"settings", "bounds"}:
        check.problems.append(f"the baseline's {section!r} section must hold settings and bounds, "
                              f"got {sorted(measured)}")
        return check
    differ = settings_difference(measured["settings"], settings)
    if differ:
        check.note = (f"{section} bounds skipped (measured with other settings: {'; '.join(differ)}); "
                      f"invariants checked")
        return check
    check.problems += check_bounds(results, measured["bounds"])
    check.note = f"{section} bounds and invariants checked"
    return check
