"""Run folders: config.json once, one JSON line per epoch, read back as rows or one DataFrame."""
import json

import pytest

import dirackit as dk
from dirackit.runlog import CONFIG, LOG, RunLog


def _write(dir, name, epochs):
    run = RunLog.create(dir, {"model": {"name": name}, "num_params": 7, "data": {"classes": list("abc")}})
    for e in range(1, epochs + 1):
        run.append({"epoch": e, "test_acc": e / 10})
    return run


def test_a_run_folder_reads_back_as_written(tmp_path):
    run = _write(tmp_path, "wrn-10-1", 3)
    again = RunLog.read(tmp_path)
    assert again.header == run.header and again.rows == run.rows and again.last == {"epoch": 3, "test_acc": 0.3}
    assert [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()] == run.rows
    assert list(again.frame()["epoch"]) == [1, 2, 3] and "wrn-10-1" in repr(again)


def test_a_runs_cost_counts_training_and_evaluation_of_every_epoch(tmp_path):
    run = RunLog.create(tmp_path, {"model": {"name": "x"}})
    assert run.seconds == 0
    for seconds, eval_seconds in ((100.0, 5.0), (80.0, 4.5)):
        run.append({"epoch": 1, "seconds": seconds, "eval_seconds": eval_seconds})
    assert RunLog.read(tmp_path).seconds == pytest.approx(189.5)


def test_a_torn_last_line_is_dropped(tmp_path):
    _write(tmp_path, "x", 2)
    with open(tmp_path / LOG, "a") as f:
        f.write('{"epoch": 3, "test_a')  # killed while writing
    assert [r["epoch"] for r in RunLog.read(tmp_path).rows] == [1, 2]


def test_truncate_and_a_resumed_session_are_written_to_the_folder(tmp_path):
    run = _write(tmp_path, "x", 3)
    run.truncate(1)
    run.add_session({"device_name": "gpu", "compute_capability": "7.5", "precision": "fp16", "torch": "9.9",
                     "dirackit": "0", "git_commit": None, "started": "now", "ignored": 1}, epoch=1)
    again = RunLog.read(tmp_path)
    assert again.rows == [{"epoch": 1, "test_acc": 0.1}]
    assert again.header["resumed"] == [{"epoch": 1, "device_name": "gpu", "compute_capability": "7.5",
                                        "precision": "fp16", "torch": "9.9", "dirackit": "0", "git_commit": None,
                                        "started": "now"}]


def test_a_log_without_a_folder_writes_nothing(tmp_path):
    run = RunLog(None, {"model": {}})
    run.append({"epoch": 1})
    assert run.rows == [{"epoch": 1}] and list(tmp_path.iterdir()) == []


def test_load_runs_stacks_every_run_under_a_folder(tmp_path):
    _write(tmp_path / "a", "wrn-10-1", 2)
    _write(tmp_path / "deeper" / "b", "plain-10-1", 1)
    frame = dk.load_runs(tmp_path)
    assert list(frame.columns[:4]) == ["run", "model", "num_params", "num_classes"]
    assert list(frame["model"]) == ["wrn-10-1", "wrn-10-1", "plain-10-1"]
    assert set(frame["num_classes"]) == {3} and len(dk.load_runs(tmp_path / "a")) == 2


def test_a_folder_that_is_no_run_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"not a dirackit run folder \\(no {CONFIG}\\)"):
        RunLog.read(tmp_path)
    with pytest.raises(FileNotFoundError, match="no run folders"):
        dk.load_runs(tmp_path)
