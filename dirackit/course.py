"""What the course notebooks share, so each of their cells says only what is particular to it.

The notebooks' ``parameters`` cells use ``""`` and ``0`` for "not set" (papermill and ``ci/params``
pass plain values); ``load_data`` turns them into ``load_cifar``'s defaults. ``save_results`` writes
the ``results.json`` that ``ci/run_notebooks.py`` checks against ``ci/baselines``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from .data import CifarData, GpuLoader, load_cifar

__all__ = ["load_data", "test_batch", "save_results", "check_answer"]

RESULTS = "results.json"


def load_data(source: str = "", dataset: str = "cifar10", train_per_class: int = 0,
              test_per_class: int = 0) -> CifarData:
    """CIFAR for a notebook: ``source`` "" reads ``dataset``'s local copy or download, and a
    per-class count of 0 keeps every image of its split."""
    return load_cifar(source or None, dataset=dataset, train_per_class=train_per_class or None,
                      test_per_class=test_per_class or None)


def test_batch(data: CifarData, size: int = 64, device: str | torch.device = "cpu") -> torch.Tensor:
    """The first ``size`` test images, normalised as evaluation feeds them to a model: the input of a
    fold check or a look at what a layer computes."""
    size = min(size, len(data.test_labels))
    loader = GpuLoader(data.test_images[:size], data.test_labels[:size], batch_size=size, mean=data.mean,
                       std=data.std, train=False, device=device)
    return next(iter(loader))[0]


def save_results(out_dir: str | os.PathLike, results: dict) -> dict:
    """Write ``results`` to ``out_dir/results.json`` (numpy numbers as plain ones) and return them,
    so a notebook's last cell both records and shows its results."""
    path = Path(out_dir, RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=_plain))
    return results


def _plain(value):
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: store numbers, strings, lists or dicts")


def check_answer(answer, expected, rel: float = 0.0, *, hint: str = "", solution: str = "",
                 show_solution: bool = False) -> bool:
    """An exercise's check cell: says whether ``answer`` is right (within ``rel``, relative, for
    numbers) without giving the expected value away. ``None`` means not answered yet.

    A wrong answer gets the ``hint`` (a nudge, not the answer). ``solution`` is the worked answer; it
    is printed only when the learner asks for it with ``show_solution=True``, so a check cell can
    carry it without spoiling the exercise."""
    if answer is None:
        right = False
        print("Not answered yet: set the answer variable in the cell above and run this cell again.")
    else:
        right = _matches(answer, expected, rel)
        print("Right." if right else f"Not quite. Hint: {hint or 'check your reasoning (or the code)'}; then try again.")
    if solution and show_solution:
        print(f"Solution: {solution}")
    elif solution and not right:
        print("Stuck? Run this cell with show_solution=True to see a worked solution.")
    return right


def _matches(answer, expected, rel: float) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return (isinstance(answer, (int, float)) and not isinstance(answer, bool)
                and math.isclose(answer, expected, rel_tol=rel, abs_tol=0))
    return answer == expected
