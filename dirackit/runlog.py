"""A run folder: provenance once (``config.json``), one JSON line per epoch (``log.jsonl``), and
which test images the latest evaluation got right (``test_correct.json``, for paired comparisons).

The log is plain JSON lines so ``pandas.read_json(path, lines=True)`` reads it and any tool can
append to or plot it. ``load_runs`` stacks many runs into one DataFrame for comparison plots;
``dirackit.restore.load_run`` rebuilds a run's model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from .atomic import atomic_write
from .stats import pack_correct, unpack_correct

__all__ = ["RunLog", "load_runs"]

CONFIG, LOG, CHECKPOINT, TEST_CORRECT = "config.json", "log.jsonl", "checkpoint.pt", "test_correct.json"
TIMING_COLUMNS = ("seconds", "images_per_s", "eval_seconds")  # differ between identical runs


class RunLog:
    """Provenance header plus per-epoch rows, mirrored to ``dir`` when it is set."""

    def __init__(self, dir: str | os.PathLike | None, header: dict, rows: list[dict] | None = None):
        self.dir = None if dir is None else Path(dir)
        self.header = header
        self.rows = list(rows or [])

    @classmethod
    def create(cls, dir: str | os.PathLike | None, header: dict) -> "RunLog":
        run = cls(dir, header)
        if run.dir is not None:
            atomic_write(run.dir / CONFIG, lambda f: f.write(json.dumps(header, indent=1).encode()))
            atomic_write(run.dir / LOG, lambda f: None)
        return run

    @classmethod
    def read(cls, dir: str | os.PathLike) -> "RunLog":
        """Read a run folder; a torn last line (a run killed while writing it) is dropped."""
        dir = Path(dir)
        if not (dir / CONFIG).is_file():
            raise FileNotFoundError(f"{dir} is not a dirackit run folder (no {CONFIG})")
        try:
            header = json.loads((dir / CONFIG).read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{dir / CONFIG} is not valid JSON ({e}): the run folder is damaged; restore the file "
                             f"from a copy, or train the run again in a new folder") from None
        shapes = {"model": dict, "data": dict, "recipe": dict, "resumed": list}
        wrong = ["the whole file"] if not isinstance(header, dict) else [
            key for key, kind in shapes.items() if key in header and not isinstance(header[key], kind)]
        if wrong:
            raise ValueError(f"{dir / CONFIG} does not have a run's shape ({', '.join(wrong)}: wrong JSON type): "
                             f"the run folder is damaged; restore the file from a copy, or train the run again in a "
                             f"new folder")
        rows = []
        log = dir / LOG
        for line in (log.read_text().splitlines() if log.is_file() else []):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return cls(dir, header, rows)

    def add_session(self, provenance: dict, epoch: int) -> None:
        """Record in ``config.json`` where and with what a resumed run continued from ``epoch``: a run
        split across jobs may change machine, torch or commit on the way."""
        keep = ("device_name", "compute_capability", "precision", "torch", "dirackit", "git_commit", "started")
        self.header.setdefault("resumed", []).append({"epoch": epoch, **{k: provenance.get(k) for k in keep}})
        if self.dir is not None:
            atomic_write(self.dir / CONFIG, lambda f: f.write(json.dumps(self.header, indent=1).encode()))

    def append(self, row: dict) -> None:
        self.rows.append(row)
        if self.dir is not None:
            with open(self.dir / LOG, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def write_test_correct(self, epoch: int, correct, test_set: str) -> None:
        """Record which test images epoch ``epoch``'s evaluation got right (one bit an image), with the
        test set's digest (``test_set_digest``): only runs on the same images are compared image by image."""
        if self.dir is None:
            return
        record = {"epoch": epoch, "images": len(correct), "test_set_sha256": test_set,
                  "correct": pack_correct(correct)}
        atomic_write(self.dir / TEST_CORRECT, lambda f: f.write(json.dumps(record).encode()))

    def test_correct(self) -> tuple[object, str] | None:
        """``(per-image correctness, test set digest)`` of the last logged epoch, or None when the folder
        has none for it (older runs, several processes, or a run killed between the two writes)."""
        path = None if self.dir is None else self.dir / TEST_CORRECT
        if path is None or not path.is_file() or not self.rows:
            return None
        record = json.loads(path.read_text())
        if record.get("epoch") != self.rows[-1].get("epoch"):
            return None
        return unpack_correct(record["correct"], record["images"]), record["test_set_sha256"]

    def truncate(self, num_rows: int) -> None:
        """Keep the first ``num_rows`` rows (on resume: the epochs the checkpoint holds)."""
        self.rows = self.rows[:num_rows]
        if self.dir is not None:
            text = "".join(json.dumps(r) + "\n" for r in self.rows)
            atomic_write(self.dir / LOG, lambda f: f.write(text.encode()))

    def frame(self):
        """The rows as a pandas DataFrame, one row per epoch."""
        import pandas as pd
        return pd.DataFrame(self.rows)

    @property
    def last(self) -> dict:
        return self.rows[-1] if self.rows else {}

    @property
    def seconds(self) -> float:
        """Wall-clock time of the logged epochs, training and evaluation (what a run cost)."""
        return sum(r["seconds"] + r["eval_seconds"] for r in self.rows)

    def __repr__(self) -> str:
        name = self.header.get("model", {}).get("name", "?")
        return f"RunLog({name}, {len(self.rows)} epochs, dir={self.dir})"


def test_set_digest(images, labels) -> str:
    """SHA-256 of a test split's pixels and labels: equal digests mean the same images in the same order."""
    digest = hashlib.sha256(images.contiguous().cpu().numpy().tobytes())
    digest.update(labels.long().cpu().numpy().tobytes())
    return digest.hexdigest()


def load_runs(paths: Iterable[str | os.PathLike] | str | os.PathLike):
    """Every run folder under ``paths`` (folders holding ``config.json``, searched recursively)
    as one DataFrame with columns ``run`` (folder), ``model``, ``num_params`` and ``num_classes`` added."""
    import pandas as pd
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for root in map(Path, paths):
        for config in sorted([root / CONFIG] if (root / CONFIG).is_file() else root.rglob(CONFIG)):
            run = RunLog.read(config.parent)
            frame = run.frame()
            frame.insert(0, "run", str(config.parent))
            frame.insert(1, "model", run.header.get("model", {}).get("name"))
            frame.insert(2, "num_params", run.header.get("num_params"))
            frame.insert(3, "num_classes", len(run.header.get("data", {}).get("classes", [])) or None)
            frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no run folders (with {CONFIG}) under {[str(p) for p in paths]}")
    return pd.concat(frames, ignore_index=True)

