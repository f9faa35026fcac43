"""The per-epoch loggers write what the run logged, stay equal to it across a resume, and say what is
missing when TensorBoard is not installed."""
import csv
import sys

import pytest
import torch

import dirackit as dk
from dirackit.loggers import CsvLogger, TensorBoardLogger

TINY = dk.recipes.WRN.replace(epochs=2, batch_size=16, lr=0.05, milestones=(1,))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_holds_the_run_rows_across_a_resume(tmp_path, tiny_data):
    torch.manual_seed(0)
    log = CsvLogger(tmp_path / "out" / "epochs.csv")
    run = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY, out=tmp_path / "run",
                 callbacks=[log], progress=False, device="cpu", time_limit=1e-6)  # pauses after epoch 1
    assert [int(r["epoch"]) for r in read_csv(log.path)] == [1]
    run = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY, out=tmp_path / "run",
                 resume=True, callbacks=[log], progress=False, device="cpu")
    rows = read_csv(log.path)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for written, logged in zip(rows, run.rows):
        assert set(written) == set(logged)
        assert float(written["test_loss"]) == logged["test_loss"]  # full precision, not a rounded copy
        assert float(written["lr"]) == logged["lr"]


def test_tensorboard_logger_writes_every_number_per_epoch(tmp_path, tiny_data):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    board = TensorBoardLogger(tmp_path / "tb")
    run = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY, callbacks=[board], progress=False,
                 device="cpu")
    board.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/test", "accuracy/train", "accuracy/test", "optimizer/lr"} <= tags
    test_loss = events.Scalars("loss/test")
    assert [e.step for e in test_loss] == [1, 2]
    assert [e.value for e in test_loss] == pytest.approx([r["test_loss"] for r in run.rows], rel=1e-6)
    assert [e.value for e in events.Scalars("optimizer/lr")] == pytest.approx([0.05, 0.01])


def test_tensorboard_logger_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were missing
    with pytest.raises(ImportError, match=r"^TensorBoard logging needs the tensorboard package: pip install"):
        TensorBoardLogger("unused")
