import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import dirackit as dk
from dirackit.rundir import RunFolderError
from dirackit.runlog import TIMING_COLUMNS
from dirackit.train import TrainingDiverged, param_groups, resolve_device

TINY = dk.recipes.WRN.replace(epochs=2, batch_size=16, lr=0.05, milestones=(1,))


def test_fit_logs_every_epoch_and_records_provenance(tmp_path, tiny_data):
    torch.manual_seed(0)
    model = dk.build_model("wrn-10-1", num_classes=4)
    run = dk.fit(model, tiny_data, TINY, out=tmp_path / "run", progress=False, device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert rows == run.rows and [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "images_per_s"):
        assert key in rows[0]
    assert rows[0]["lr"] == 0.05 and rows[1]["lr"] == pytest.approx(0.05 * 0.2)
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["model"]["name"] == "wrn-10-1" and config["recipe"]["epochs"] == 2
    assert config["num_params"] == dk.count_params(model)
    for key in ("seed", "torch", "device", "git_commit", "started", "data"):
        assert key in config
    assert config["data"]["sha256"] == tiny_data.sha256
    frame = dk.load_runs(tmp_path)
    assert list(frame["epoch"]) == [1, 2] and set(frame["model"]) == {"wrn-10-1"}


def test_load_run_rebuilds_the_trained_model(tmp_path, tiny_data):
    model = dk.build_model("wrn-10-1", num_classes=4, dropout=0.1)
    dk.fit(model, tiny_data, TINY.replace(epochs=1), out=tmp_path, progress=False, device="cpu")
    loaded, config, log = dk.load_run(tmp_path)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert config["model"]["options"] == {"dropout": 0.1} and len(log) == 1


def test_training_learns_something(tiny_data):
    torch.manual_seed(0)
    model = dk.build_model("wrn-10-1", num_classes=4)
    run = dk.fit(model, tiny_data, dk.recipes.FAST.replace(epochs=6, batch_size=16, lr=0.1), progress=False,
                 device="cpu")
    assert run.rows[-1]["train_loss"] < run.rows[0]["train_loss"]
    assert run.rows[-1]["test_acc"] > 0.5  # 4 classes: chance is 0.25


class Hooked(nn.Module):
    """A model using every optional trainer hook."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = nn.Parameter(torch.ones(4))
        self.loss_calls = 0

    def forward(self, x):
        return self.conv(x).mean((2, 3)) * self.scale

    def no_weight_decay(self):
        return {"scale"}

    def loss(self, logits, targets):
        self.loss_calls += 1
        return 2 * F.cross_entropy(logits, targets)

    def log_state(self):
        return {"scale_mean": self.scale.mean().item()}


def test_model_hooks_plug_in(tiny_data):
    model = Hooked()
    run = dk.fit(model, tiny_data, TINY, progress=False, device="cpu")
    assert model.loss_calls == 2 * 4  # 64 images / batch 16, two epochs
    assert run.rows[-1]["scale_mean"] == pytest.approx(model.scale.mean().item())  # logged after the epoch
    assert run.rows[0]["scale_mean"] != 1.0  # the no-decay scale moved during training
    groups = param_groups(model, TINY)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.scale) in no_decay and id(model.conv.weight) not in no_decay
    assert id(model.conv.bias) not in no_decay  # decay="all" decays biases (WRN reference)
    groups = param_groups(model, TINY.replace(decay="weights"))
    assert {id(p) for p in groups[0]["params"]} == {id(model.conv.weight)}


class Explodes(nn.Module):
    """Returns NaN logits from its ``at``-th training forward on."""

    def __init__(self, at: int):
        super().__init__()
        self.net, self.calls, self.at = dk.build_model("wrn-10-1", num_classes=4), 0, at
        self.build_spec = self.net.build_spec

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path, tiny_data):
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 2 of 4.*last good checkpoint \(1 epochs\)"):
        dk.fit(Explodes(at=6), tiny_data, TINY.replace(epochs=3, nan_check_every=3), out=tmp_path,
               progress=False, device="cpu")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(dk.RunLog.read(tmp_path).rows) == 1


def test_nan_in_the_first_epoch_says_to_start_in_a_new_folder_which_then_trains(tmp_path, tiny_data):
    with pytest.raises(TrainingDiverged, match=r"no checkpoint was written yet, so start again in a new folder or "
                                               r"delete " + str(tmp_path / "first")):
        dk.fit(Explodes(at=1), tiny_data, TINY.replace(epochs=1), out=tmp_path / "first", progress=False,
               device="cpu")
    with pytest.raises(RunFolderError):  # the folder keeps the failed run's config.json and log.jsonl
        dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY.replace(epochs=1), out=tmp_path / "first",
               progress=False, device="cpu")
    run = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY.replace(epochs=1),
                 out=tmp_path / "second", progress=False, device="cpu")
    assert len(run.rows) == 1


def test_refuses_to_overwrite_or_to_resume_a_different_run(tmp_path, tiny_data):
    model = dk.build_model("wrn-10-1", num_classes=4)
    dk.fit(model, tiny_data, TINY.replace(epochs=1), out=tmp_path, progress=False, device="cpu")
    with pytest.raises(RunFolderError, match="resume"):
        dk.fit(model, tiny_data, TINY, out=tmp_path, progress=False, device="cpu")
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.1"):
        dk.fit(model, tiny_data, TINY.replace(lr=0.1), out=tmp_path, resume=True, progress=False, device="cpu")


@pytest.mark.parametrize("reset", [True, False])
def test_momentum_reset_at_the_lr_drop_as_the_references_recreate_the_optimiser(tiny_data, reset):
    buffers_before_step = []

    def record(optimizer, args, kwargs):
        buffers_before_step.append(sum("momentum_buffer" in optimizer.state[p] for g in optimizer.param_groups
                                       for p in g["params"]))
    handle = register_optimizer_step_pre_hook(record)
    try:
        dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY.replace(momentum_reset=reset),
               progress=False, device="cpu")  # 4 steps an epoch, lr drop at epoch 1
    finally:
        handle.remove()
    params = len(list(dk.build_model("wrn-10-1", num_classes=4).parameters()))
    expected_at_drop = 0 if reset else params
    assert buffers_before_step == [0, params, params, params, expected_at_drop, params, params, params]


def test_flip_test_time_augmentation_averages_the_logits_of_each_image_and_its_mirror(tiny_data):
    from dirackit.data import GpuLoader
    from dirackit.train import evaluate
    torch.manual_seed(0)
    model = dk.build_model("wrn-10-1", num_classes=4).eval()
    loader = GpuLoader(tiny_data.test_images, tiny_data.test_labels, batch_size=5, train=False,
                       mean=tiny_data.mean, std=tiny_data.std, device="cpu")
    x, y = map(torch.cat, zip(*loader))
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(3))
    for flip, logits in ((False, plain), (True, (plain + mirrored) / 2)):
        loss, acc = evaluate(model, loader, flip=flip)
        assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
        assert acc == (logits.argmax(1) == y).float().mean().item()
    assert not torch.allclose(plain, mirrored)  # the mirror really is a different input


class Slow(nn.Module):
    """wrn-10-1 whose every training step takes at least ``seconds``: epochs of a known minimum length."""

    def __init__(self, seconds: float):
        super().__init__()
        self.net, self.seconds = dk.build_model("wrn-10-1", num_classes=4), seconds

    def forward(self, x):
        if self.training:
            time.sleep(self.seconds)
        return self.net(x)


def test_time_limit_pauses_after_the_last_epoch_that_fits_and_resume_finishes_the_same_run(tmp_path, tiny_data):
    recipe = TINY.replace(epochs=3)  # 4 steps of >= 0.1 s: every epoch takes >= 0.4 s
    torch.manual_seed(0)
    whole = dk.fit(Slow(0.1), tiny_data, recipe, out=tmp_path / "whole", progress=False, device="cpu",
                   time_limit=60)
    assert len(whole.rows) == 3
    torch.manual_seed(0)
    paused = dk.fit(Slow(0.1), tiny_data, recipe, out=tmp_path / "split", progress=False, device="cpu",
                    time_limit=0.6)  # epoch 1 ends after >= 0.4 s; a second would end after >= 0.8 s
    assert len(paused.rows) == 1 and len(dk.RunLog.read(tmp_path / "split").rows) == 1
    torch.manual_seed(1)  # resuming must not depend on the caller's RNG
    resumed = dk.fit(Slow(0.1), tiny_data, recipe, out=tmp_path / "split", resume=True, progress=False,
                     device="cpu")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    assert strip(resumed.rows) == strip(whole.rows)
    config = json.loads((tmp_path / "split/config.json").read_text())
    assert [s["epoch"] for s in config["resumed"]] == [1] and config["resumed"][0]["torch"] == torch.__version__
    assert "resumed" not in json.loads((tmp_path / "whole/config.json").read_text())
    with pytest.raises(ValueError, match="time_limit must be a positive"):
        dk.fit(Slow(0.0), tiny_data, recipe, progress=False, device="cpu", time_limit=0)


def test_a_run_saved_before_a_recipe_field_existed_resumes_with_that_field_at_its_default(tmp_path, tiny_data):
    from dirackit.checkpoint import load_checkpoint, save_checkpoint
    recipe = TINY.replace(momentum_reset=False)
    dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, recipe, out=tmp_path, progress=False,
           device="cpu", time_limit=1e-3)  # pauses after epoch 1 of 2
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    for field in ("momentum_reset", "test_flip"):  # as a checkpoint written by an older dirackit
        del state["recipe"][field]
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="momentum_reset: False -> True"):  # the missing field is not a wildcard
        dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY, out=tmp_path, resume=True,
               progress=False, device="cpu")
    run = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, recipe, out=tmp_path, resume=True,
                 progress=False, device="cpu")
    assert [r["epoch"] for r in run.rows] == [1, 2]


def test_labels_out_of_range_for_the_head(make_data):
    with pytest.raises(dk.DataError, match="num_classes=6"):
        dk.fit(dk.build_model("wrn-10-1", num_classes=4), make_data(num_classes=6), TINY, progress=False,
               device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_a_missing_device_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


RUNNER = """
import os, signal, sys, torch
sys.path.insert(0, sys.argv[1])
from conftest import _synthetic_data
import dirackit as dk
torch.set_num_threads(1)
out, kill_at, resume = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
torch.manual_seed(0)
model = dk.build_model("wrn-10-1", num_classes=4, dropout=0.2)
calls = 0
def die_at_kill_at(module, inputs):
    global calls
    calls += module.training
    if kill_at and calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
model.register_forward_pre_hook(die_at_kill_at)
recipe = dk.recipes.WRN.replace(epochs=3, batch_size=16, lr=0.05, milestones=(2,))
dk.fit(model, _synthetic_data(), recipe, out=out, resume=resume, progress=False, device="cpu")
"""


def _run(tmp_path: Path, out: str, kill_at: int, resume: bool) -> int:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    tests = str(Path(__file__).parent)
    return subprocess.run([sys.executable, str(script), tests, str(tmp_path / out), str(kill_at), str(int(resume))],
                          capture_output=True, text=True, timeout=300).returncode


def test_sigkill_mid_epoch_then_resume_logs_exactly_what_an_uninterrupted_run_logs(tmp_path):
    assert _run(tmp_path, "whole", 0, False) == 0
    assert _run(tmp_path, "killed", 6, False) == -9  # 4 steps an epoch: dies in epoch 2
    assert len(dk.RunLog.read(tmp_path / "killed").rows) == 1
    assert _run(tmp_path, "killed", 0, True) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    whole = dk.RunLog.read(tmp_path / "whole").rows
    resumed = dk.RunLog.read(tmp_path / "killed").rows
    assert len(whole) == 3 and strip(resumed) == strip(whole)


def _steep_scaler(monkeypatch):
    """fit's fp16 scaler starts at 2^28: the first steps' fp16 gradients overflow, as a too-high scale does
    on a GPU, so the scaler skips them and halves the scale each time (from 2^24 they fit)."""
    import dirackit.train as train
    made = []

    def steep(precision, device):
        made.append(torch.amp.GradScaler(torch.device(device).type, init_scale=2.0 ** 28))
        return made[-1]
    monkeypatch.setattr(train, "grad_scaler", steep)
    return made


def test_fp16_skips_overflowing_steps_without_calling_it_divergence_and_resumes_its_scaler_exactly(
        tmp_path, tiny_data, monkeypatch, capsys):
    made = _steep_scaler(monkeypatch)
    recipe = TINY.replace(epochs=3, precision="fp16")
    torch.manual_seed(0)
    whole = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, recipe, out=tmp_path / "whole",
                   device="cpu")
    assert "training wrn-10-1 on " in capsys.readouterr().out.splitlines()[0]  # the choice, said first
    scales = [r["loss_scale"] for r in whole.rows]
    assert scales[0] == 2.0 ** 24 and scales[-1] < 2.0 ** 24  # 4 skipped steps in epoch 1, more after
    assert all(math.isfinite(r["train_loss"]) for r in whole.rows)
    config = json.loads((tmp_path / "whole/config.json").read_text())
    assert config["precision"] == "fp16" and config["compute_capability"] is None
    assert config["recipe"]["precision"] == "fp16"
    torch.manual_seed(0)
    dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, recipe, out=tmp_path / "split", progress=False,
           device="cpu", time_limit=1e-3)  # pauses after epoch 1
    saved = torch.load(tmp_path / "split/checkpoint.pt", weights_only=True)["scaler"]
    assert saved["scale"] == 2.0 ** 24
    resumed = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, recipe, out=tmp_path / "split",
                     resume=True, progress=False, device="cpu")
    assert made[-1].get_scale() == whole.rows[-1]["loss_scale"]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    assert strip(resumed.rows) == strip(whole.rows)


def test_a_run_saved_with_bf16_resumes_as_precision_auto(tmp_path, tiny_data):
    from dirackit.checkpoint import load_checkpoint, save_checkpoint
    dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY, out=tmp_path, progress=False,
           device="cpu", time_limit=1e-3)  # pauses after epoch 1 of 2
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["recipe"]["precision"]
    state["recipe"]["bf16"] = True  # as dirackit wrote it before Recipe.precision
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    config = json.loads((tmp_path / "config.json").read_text())
    del config["recipe"]["precision"]
    config["recipe"]["bf16"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="precision: 'auto' -> 'fp32'"):
        dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY.replace(precision="fp32"),
               out=tmp_path, resume=True, progress=False, device="cpu")
    run = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY, out=tmp_path, resume=True,
                 progress=False, device="cpu")
    assert [r["epoch"] for r in run.rows] == [1, 2]
    model, config, log = dk.load_run(tmp_path)  # the folder still loads, its config.json as it was written
    assert config["recipe"]["bf16"] is True and len(log) == 2
