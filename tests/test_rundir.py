"""A run folder is written only by the run that owns it, and resumed only by the same run: a careless
or hostile user's cases, each with the one line it gets and nothing lost."""
import json
import os
import time

import pytest
import torch
from torch import nn

import dirackit as dk
from dirackit.checkpoint import CheckpointError, load_checkpoint
from dirackit.rundir import RunFolderError, claim
from dirackit.train import TrainingDiverged

ONE = dk.recipes.WRN.replace(epochs=1, batch_size=16, lr=0.05, milestones=())


class Tiny(nn.Module):
    """A model that trains in milliseconds, built "by name" like the registry's (``build_spec``)."""

    def __init__(self, width: int = 4, num_classes: int = 4, **options):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, width, 3), nn.Linear(width, num_classes)
        self.build_spec = {"name": "tiny", "num_classes": num_classes, "options": options}

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def train(data, out, epochs: int = 1, resume: bool = False, model=None, time_limit=None):
    torch.manual_seed(0)
    return dk.fit(model or Tiny(), data, ONE.replace(epochs=epochs), out=out, resume=resume, progress=False,
                  device="cpu", time_limit=time_limit)


def snapshot(folder):
    """The run's files (the lock file only ever records who held the folder last)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


@pytest.fixture
def run_folder(tmp_path, tiny_data):
    """A finished two-epoch run (so it also has the previous epoch's checkpoint)."""
    train(tiny_data, tmp_path / "run", epochs=2)
    return tmp_path / "run"


def test_a_folder_with_a_runs_log_but_no_checkpoint_is_neither_overwritten_nor_resumed(run_folder, tmp_path,
                                                                                      tiny_data):
    exported = tmp_path / "exported"  # as results/ holds reference runs: the log and provenance only
    exported.mkdir()
    for name in ("config.json", "log.jsonl"):
        (exported / name).write_bytes((run_folder / name).read_bytes())
    before = snapshot(exported)
    for resume in (False, True):
        with pytest.raises(RunFolderError, match="config.json and log.jsonl but no checkpoint.pt.*new folder"):
            train(tiny_data, exported, epochs=2, resume=resume)
    assert snapshot(exported) == before


def test_resume_needs_a_run_to_continue(tmp_path, tiny_data):
    with pytest.raises(RunFolderError, match="cannot resume .*misspelt: no such folder"):
        train(tiny_data, tmp_path / "misspelt", resume=True)
    assert not (tmp_path / "misspelt").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match="no run was started there"):
        train(tiny_data, tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="empty string"):
        train(tiny_data, "")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        train(tiny_data, tmp_path / "file")


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path, tiny_data):
    lock = claim(tmp_path / "run", resume=False)  # another open file: flock conflicts as between processes
    try:
        with pytest.raises(RunFolderError, match=rf"in use by another run \(pid {os.getpid()} on .*since"):
            train(tiny_data, tmp_path / "run")
    finally:
        lock.release()
    assert not (tmp_path / "run" / "config.json").exists()
    train(tiny_data, tmp_path / "run")  # released: the folder is free again
    with pytest.raises(RunFolderError, match="already holds a run"):  # and the lock was released after fit
        train(tiny_data, tmp_path / "run")


def test_resume_refuses_other_data_or_another_model(run_folder, make_data, tiny_data):
    before = snapshot(run_folder)
    with pytest.raises(RunFolderError, match=r"other data \(train_images: 64 -> 32; test_images: 16 -> 8\)"):
        train(tiny_data.subset(8, 2), run_folder, epochs=2, resume=True)
    other = make_data(seed=1)  # same classes and counts, other images
    other = type(other)(**{**other.__dict__, "sha256": "1" * 64})
    with pytest.raises(RunFolderError, match=r"other data \(sha256: 000000000000\.\.\. -> 111111111111\.\.\.\)"):
        train(other, run_folder, epochs=2, resume=True)
    with pytest.raises(RunFolderError, match=r"another model \(options: \{\} -> \{'dropout': 0.3\}\)"):
        train(tiny_data, run_folder, epochs=2, resume=True, model=Tiny(dropout=0.3))  # as --dropout 0.3
    with pytest.raises(RunFolderError, match="checkpoint does not fit this model .*size mismatch for conv.weight"):
        train(tiny_data, run_folder, epochs=2, resume=True, model=Tiny(width=8))  # same name, other weights
    assert snapshot(run_folder) == before


@pytest.mark.parametrize("config, problem", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "does not have a run's shape (the whole file"),
    ('{"model": "wrn", "data": 5}', "does not have a run's shape (model, data"),
])
def test_a_damaged_config_is_one_line(run_folder, tiny_data, config, problem):
    (run_folder / "config.json").write_text(config)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")) as error:
        train(tiny_data, run_folder, epochs=2, resume=True)
    assert "\n" not in str(error.value)


def test_a_damaged_checkpoint_is_refused_naming_the_previous_one(run_folder, tiny_data):
    checkpoint = run_folder / "checkpoint.pt"
    blob = bytearray(checkpoint.read_bytes())
    weights = torch.load(checkpoint, weights_only=True)["model"]["conv.weight"].numpy().tobytes()
    blob[blob.index(weights) + len(weights) // 2] ^= 0x01  # one bit of one weight
    checkpoint.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"checkpoint.pt is damaged.*checkpoint.previous.pt \(epoch 1\), "
                                              r"is intact: rename it to checkpoint.pt"):
        train(tiny_data, run_folder, epochs=2, resume=True)
    os.replace(run_folder / "checkpoint.previous.pt", checkpoint)  # what the message says to do
    run = train(tiny_data, run_folder, epochs=2, resume=True)
    assert [r["epoch"] for r in run.rows] == [1, 2]


def test_a_damaged_first_checkpoint_says_there_is_no_alternative(tmp_path, tiny_data):
    train(tiny_data, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["model"]["fc.bias"][0] += 1  # a changed value in a well-formed file
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="do not match its checksum; no earlier checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_a_checkpoint_of_the_previous_format_still_resumes(tmp_path, tiny_data):
    """Runs started before checkpoints had a checksum must resume with this code."""
    train(tiny_data, tmp_path, epochs=2, time_limit=1e-3)  # pauses after epoch 1 of 2
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["checksum"]
    torch.save(state, tmp_path / "checkpoint.pt")  # as dirackit wrote it before
    run = train(tiny_data, tmp_path, epochs=2, resume=True)
    assert [r["epoch"] for r in run.rows] == [1, 2] and "checksum" in torch.load(tmp_path / "checkpoint.pt")


def test_run_files_follow_the_umask_and_stale_temporaries_go(tmp_path, tiny_data):
    old = os.umask(0o027)
    try:
        train(tiny_data, tmp_path, epochs=2, time_limit=1e-3)  # pauses after epoch 1 of 2
        stale = tmp_path / ".checkpoint.pt.0badf00d.tmp"  # a write killed mid-way
        stale.write_bytes(b"half a checkpoint")
        os.utime(stale, (time.time() - 60, time.time() - 60))
        train(tiny_data, tmp_path, epochs=2, resume=True)
    finally:
        os.umask(old)
    assert not stale.exists()
    for name in ("config.json", "log.jsonl", "checkpoint.pt", "checkpoint.previous.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


class NanInEval(nn.Module):
    """Finite while training; NaN logits in eval mode from the ``at``-th evaluation on."""

    def __init__(self, at: int):
        super().__init__()
        self.conv, self.evals, self.at = nn.Conv2d(3, 4, 3), 0, at

    def forward(self, x):
        out = self.conv(x).mean((2, 3))
        return out * float("nan") if not self.training and self.evals >= self.at else out

    def train(self, mode: bool = True):
        self.evals += not mode
        return super().train(mode)


def test_evaluation_nan_stops_the_run_like_a_training_nan(tmp_path, tiny_data):
    with pytest.raises(TrainingDiverged, match=r"evaluation loss became NaN/inf after epoch 2 .*last good "
                                               r"checkpoint \(1 epochs\)"):
        dk.fit(NanInEval(at=3), tiny_data, ONE.replace(epochs=3), out=tmp_path, progress=False, device="cpu")
    assert len(dk.RunLog.read(tmp_path).rows) == 1 and torch.load(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_bad_settings_are_one_line(tiny_data, make_data):
    with pytest.raises(ValueError, match="time_limit must be a positive number of seconds, got nan"):
        dk.fit(NanInEval(at=99), tiny_data, ONE, progress=False, device="cpu", time_limit=float("nan"))
    with pytest.raises(ValueError, match="cannot train a model here"):
        dk.fit(NanInEval(at=99), tiny_data, ONE, progress=False, device="meta")
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2\\*\\*63 - 1"):
        ONE.replace(seed=10 ** 23)
    with pytest.raises(dk.DataError, match="single class"):
        dk.fit(NanInEval(at=99), make_data(num_classes=1), ONE, progress=False, device="cpu")
