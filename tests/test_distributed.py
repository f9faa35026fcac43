"""Data-parallel training: two CPU processes (gloo) started by torchrun against one process.

One torchrun launch runs every scenario (process start-up dominates the cost): a model without
BatchNorm, where two processes must reproduce one process up to float summation order; WRN-10-1,
where BatchNorm normalises each rank's half batch, so one process reproduces it only when it, too,
normalises each half (``halves``); and WRN-10-1 with dropout (each rank draws its own masks), whole
and stopped after epoch 1 then resumed.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import dirackit as dk
from dirackit.runlog import TIMING_COLUMNS
from dirackit.train import distributed

TESTS = Path(__file__).parent
# Same images in the same steps, so without BatchNorm the only difference is the order of float sums
# (DDP averages the two halves' gradients, one process sums the whole batch): measured 2.4e-7 on the
# losses (printed with -s), 5e-8 on the weights. With BatchNorm each rank normalises 8 images instead of 16, which moves
# every activation; on these 64 images, whose class is their brightness, the losses of two epochs
# differ by up to 0.14 (train) and 0.06 (test).
EXACT_TOL, BN_TOL = 1e-5, 0.25

WORKER = """
import os, sys
from pathlib import Path
import torch
from torch import nn
sys.path.insert(0, sys.argv[1])
from conftest import _synthetic_data
import dirackit as dk

torch.set_num_threads(1)
out, rank = Path(sys.argv[2]), int(os.environ.get("RANK", 0))
data = _synthetic_data()
data.train_images[..., 0] = torch.arange(len(data.train_labels), dtype=torch.uint8)[:, None, None]  # red: index
recipe = dk.recipes.WRN.replace(epochs=2, batch_size=16, lr=0.05, milestones=(1,))


def plain():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


class Halves(nn.Module):  # BatchNorm statistics over each half of the batch, as two ranks compute them
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.cat([self.inner(half) for half in x.chunk(2)])


def build(name):
    torch.manual_seed(0)
    dropout = 0.2 if name in ("dropout", "resumed") else 0.0
    model = plain() if name == "plain" else dk.build_model("wrn-10-1", num_classes=4, dropout=dropout)
    model = Halves(model) if name == "halves" else model
    seen = []
    def record(module, inputs):  # every pixel's red value is the image's index, whatever the crop and flip
        if module.training:
            pixels = (inputs[0][:, 0, 16, 16] * data.std[0] + data.mean[0]) * 255
            seen.append(pixels.round().long().tolist())
    model.register_forward_pre_hook(record)
    return model, seen


def save(name, model, seen):
    torch.save({"seen": seen, "state": model.state_dict()}, out / "records" / f"{name}.{rank}.pt")


class Stop(Exception):
    pass


def stop_after_epoch_1(row, run):
    if row["epoch"] == 1:
        raise Stop


(out / "records").mkdir(parents=True, exist_ok=True)
for name in ("plain", "wrn"):
    model, seen = build(name)
    dk.fit(model, data, recipe, out=out / name, progress=name == "wrn", device="cpu")
    save(name, model, seen)
if "WORLD_SIZE" not in os.environ:
    model, seen = build("halves")
    dk.fit(model, data, recipe, out=out / "halves", progress=False, device="cpu")
    save("halves", model.inner, seen)
else:
    model, seen = build("dropout")
    dk.fit(model, data, recipe, out=out / "dropout", progress=False, device="cpu")
    save("dropout", model, seen)
    model, _ = build("resumed")
    try:
        dk.fit(model, data, recipe, out=out / "resumed", callbacks=[stop_after_epoch_1], progress=False,
               device="cpu")
    except Stop:
        pass
    model, seen = build("resumed")
    dk.fit(model, data, recipe, out=out / "resumed", resume=True, progress=False, device="cpu")
    save("resumed", model, seen)
    try:  # a folder that rank 0 refuses: every rank must stop, none wait for it
        dk.fit(build("plain")[0], data, recipe, out=out / "plain", progress=False, device="cpu")
    except ValueError as e:
        (out / "records" / f"refused.{rank}.txt").write_text(f"{type(e).__name__}: {e}")
    dk.train.distributed.shutdown()
"""


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", DIRACKIT_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every scenario, trained by two processes (``ddp``) and by one (``single``)."""
    root = tmp_path_factory.mktemp("distributed")
    script = root / "worker.py"
    script.write_text(WORKER)
    ddp = run(torchrun(str(script), str(TESTS), str(root / "ddp")), root)
    run([sys.executable, str(script), str(TESTS), str(root / "single")], root)
    return {"root": root, "stdout": ddp.stdout}


def records(runs: dict, where: str, name: str, rank: int = 0) -> dict:
    return torch.load(runs["root"] / where / "records" / f"{name}.{rank}.pt", weights_only=True)


def rows(runs: dict, where: str, name: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS}
            for row in dk.RunLog.read(runs["root"] / where / name).rows]


@pytest.mark.parametrize("name", ["plain", "wrn", "dropout", "resumed"])
def test_ranks_hold_bitwise_identical_models(runs, name):
    """DDP averages the gradients and rank 0's buffers are broadcast: parameters and BN statistics agree."""
    ranks = [records(runs, "ddp", name, r)["state"] for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


@pytest.mark.parametrize("name", ["plain", "wrn"])
def test_each_step_splits_the_single_process_batch_into_disjoint_halves(runs, name):
    single = records(runs, "single", name)["seen"]
    halves = [records(runs, "ddp", name, r)["seen"] for r in (0, 1)]
    assert len(single) == len(halves[0]) == len(halves[1]) == 2 * 4  # 2 epochs of 64 images, batch 16
    for step, batch in enumerate(single):
        first, second = halves[0][step], halves[1][step]
        assert len(first) == len(second) == 8 and not set(first) & set(second)
        assert first + second == batch
    assert sorted(sum(single[:4], [])) == list(range(64))  # an epoch is every image once


def test_only_rank_0_writes_the_run_folder_and_prints(runs):
    for name in ("plain", "wrn", "dropout", "resumed"):
        folder = runs["root"] / "ddp" / name
        assert sorted(p.name for p in folder.iterdir()) == [".lock", "checkpoint.previous.pt", "checkpoint.pt",
                                                            "config.json", "log.jsonl"]
        assert len((folder / "log.jsonl").read_text().splitlines()) == 2  # not one line per rank
        config = json.loads((folder / "config.json").read_text())
        assert config["world_size"] == 2 and config["sync_bn"] is False
    assert json.loads((runs["root"] / "single/wrn/config.json").read_text())["world_size"] == 1
    assert runs["stdout"].count("epoch   1/2") == runs["stdout"].count("epoch   2/2") == 1


def largest_gaps(a_rows: list[dict], b_rows: list[dict]) -> dict[str, float]:
    """Largest |difference| of train and test loss over the epochs (printed: run with -s to see them)."""
    gaps = {k: max(abs(a[k] - b[k]) for a, b in zip(a_rows, b_rows)) for k in ("train_loss", "test_loss")}
    print(f"largest loss gaps: {gaps}")
    return gaps


def test_without_batchnorm_two_processes_reproduce_one(runs):
    ddp, single = rows(runs, "ddp", "plain"), rows(runs, "single", "plain")
    largest_gaps(ddp, single)
    for a, b in zip(ddp, single, strict=True):
        for key in ("train_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], abs=EXACT_TOL), (key, a, b)
        assert (a["train_acc"], a["test_acc"], a["lr"]) == (b["train_acc"], b["test_acc"], b["lr"])
    ddp_state, single_state = records(runs, "ddp", "plain")["state"], records(runs, "single", "plain")["state"]
    for key in single_state:
        torch.testing.assert_close(ddp_state[key], single_state[key], rtol=0, atol=EXACT_TOL)


def test_with_batchnorm_only_the_statistics_differ(runs):
    """One process with BatchNorm over each half batch trains as the two ranks do (its running
    statistics differ, as both halves update them: so only training losses and parameters compare)."""
    ddp, halves = rows(runs, "ddp", "wrn"), rows(runs, "single", "halves")
    for a, b in zip(ddp, halves, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=EXACT_TOL), (a, b)
        assert a["train_acc"] == b["train_acc"]
    ddp_model, halves_model = records(runs, "ddp", "wrn")["state"], records(runs, "single", "halves")["state"]
    for key in (k for k in halves_model if "running" not in k and "num_batches" not in k):
        torch.testing.assert_close(ddp_model[key], halves_model[key], rtol=0, atol=EXACT_TOL)


def test_with_batchnorm_the_loss_curve_stays_close_to_one_process(runs):
    ddp, single = rows(runs, "ddp", "wrn"), rows(runs, "single", "wrn")
    largest_gaps(ddp, single)
    for a, b in zip(ddp, single, strict=True):
        for key in ("train_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], abs=BN_TOL), (key, a, b)
    assert ddp[0]["train_loss"] != pytest.approx(single[0]["train_loss"], abs=EXACT_TOL)  # BN does differ


def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_run(runs):
    """Every rank restores its own RNG state, so even the dropout masks continue where they were."""
    resumed_steps = records(runs, "ddp", "resumed")["seen"]
    assert resumed_steps == records(runs, "ddp", "dropout")["seen"][4:]  # it did stop: only epoch 2 was left
    assert rows(runs, "ddp", "resumed") == rows(runs, "ddp", "dropout")
    resumed, whole = records(runs, "ddp", "resumed")["state"], records(runs, "ddp", "dropout")["state"]
    assert all(torch.equal(resumed[key], whole[key]) for key in whole)


def test_the_command_line_under_torchrun(tmp_path):
    folder = tmp_path / "imgs"
    for split, n in (("train", 8), ("test", 2)):
        for c in range(3):
            (folder / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (40 + 80 * c + 5 * i,) * 3).save(folder / f"{split}/class{c}/{i}.png")
    out = tmp_path / "run"
    result = run(torchrun("-m", "dirackit.train", "--model", "wrn-10-1", "--data", str(folder), "--device", "cpu",
                          "--out", str(out), "--batch-size", "8", "--epochs", "1", "--no-progress"), tmp_path)
    assert result.stdout.count("done: 1 epochs") == 1
    assert len(dk.RunLog.read(out).rows) == 1 and dk.RunLog.read(out).header["world_size"] == 2


def test_a_folder_refused_on_rank_0_stops_every_rank(runs):
    refused = [(runs["root"] / "ddp" / "records" / f"refused.{rank}.txt").read_text() for rank in (0, 1)]
    assert refused[0].startswith("RunFolderError: ") and "already holds a run" in refused[0]
    assert refused[1] == f"ValueError: rank 0 stopped: {refused[0].removeprefix('RunFolderError: ')}"


def test_leftover_torchrun_variables_give_up_waiting_for_peers(monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port))):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "RENDEZVOUS_TIMEOUT_S", 1)
    with pytest.raises(ValueError, match=r"WORLD_SIZE=2 did not meet within 1 s .*unset WORLD_SIZE, RANK, "
                                         r"MASTER_ADDR and MASTER_PORT"):
        distributed.init_from_env(torch.device("cpu"))
    assert not torch.distributed.is_initialized()


def test_sync_bn_on_the_cpu_is_a_clear_error(tiny_data):
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, progress=False, device="cpu", sync_bn=True)


def test_without_torchrun_there_is_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world, device = distributed.init_from_env(torch.device("cpu"))
    assert world == distributed.World(0, 1) and device == torch.device("cpu")
    assert not torch.distributed.is_initialized() and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        distributed.init_from_env(torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK is not set"):
        distributed.init_from_env(torch.device("cpu"))
