"""Per-epoch loggers for ``fit(callbacks=[...])``: TensorBoard event files and a CSV table.

The run folder's ``log.jsonl`` stays the record ``dk.load_runs`` reads; these write the same rows
where other tools look for them. Each is a ``fit`` callback, ``logger(row, run)``; with several
processes only rank 0 writes.

    fit(model, data, recipe, out="runs/x", callbacks=[TensorBoardLogger("tb/x"), CsvLogger("x.csv")])
    python -m dirackit.train ... --tensorboard tb/x --csv x.csv
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .atomic import atomic_write
from .runlog import RunLog

__all__ = ["CsvLogger", "TensorBoardLogger"]

# TensorBoard groups scalars by the part of the tag before "/": loss and accuracy curves share a chart.
_TAGS = {"train_loss": "loss/train", "test_loss": "loss/test", "train_acc": "accuracy/train",
         "test_acc": "accuracy/test", "lr": "optimizer/lr", "step": "optimizer/step", "images_per_s": "speed/train_images_per_s",
         "seconds": "speed/train_seconds", "eval_seconds": "speed/eval_seconds"}


def _is_main_process() -> bool:
    import torch.distributed as dist
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class CsvLogger:
    """The run's epochs as a CSV table, one row per epoch, rewritten whole after every epoch.

    Rewriting from ``run.rows`` keeps the file equal to the run's log: a resumed run has no duplicated
    epochs, and a column that appears later (a model's logged state) gets its own header cell."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __call__(self, row: dict, run: RunLog) -> None:
        if not _is_main_process():
            return
        columns = list(dict.fromkeys(key for r in run.rows for key in r))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                         for r in run.rows)
        atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))


class TensorBoardLogger:
    """Every number of each epoch's row as a TensorBoard scalar (step = epoch), and the run's
    provenance as text at the first epoch written.

    Needs the ``tensorboard`` package (``pip install tensorboard``, or the ``tensorboard`` extra);
    without it the constructor raises ImportError saying so. View with ``tensorboard --logdir DIR``."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                              "(or pip install -e '.[tensorboard]')") from None
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self.writer = None  # opened at the first epoch, on rank 0 only

    def __call__(self, row: dict, run: RunLog) -> None:
        if not _is_main_process():
            return
        if self.writer is None:
            self.writer = self._writer_class(str(self.log_dir))
            self.writer.add_text("run/config", f"```\n{json.dumps(run.header, indent=1, default=str)}\n```",
                                 global_step=row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(_TAGS.get(key, f"state/{key}"), value, global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
