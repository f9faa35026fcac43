"""``python -m dirackit.bench gpu-check``: the whole plan at tiny sizes on the CPU, its verdicts on given
rows, the per-step process with its budget, and what an out-of-time check still writes."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dirackit import bench
from dirackit.bench import gpu_check


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 shared cores, two threads mostly wait for each other
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """An image folder of 10 classes (8 train and 2 test images each), decoded into a cache of its own."""
    monkeypatch.setenv("DIRACKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for c in range(10):
            folder = tmp_path / "cifar" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "cifar"


def _table(text: str) -> list[list[str]]:
    """The rows of the last table in ``text`` (columns split on two or more spaces)."""
    lines = text.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("target "))
    return [re.split(r"\s{2,}", line) for line in lines[start + 1:]]


def test_the_whole_plan_runs_at_tiny_sizes_on_the_cpu(tmp_path, tiny_cifar, one_thread, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["gpu-check", "--device", "cpu", "--out", str(out), "--data", str(tiny_cifar)])
    assert exit_info.value.code == 0
    [summary] = out.glob("gpu-check-cpu-*.txt")
    text = summary.read_text()
    assert "no CUDA here, so the same plan at tiny sizes on the CPU" in text and "80 train / 20 test" in text
    assert "precision: fp32 (precision auto on cpu)" in text
    for step in gpu_check.PLAN:
        assert re.search(rf"^{step.name} +{step.budget:.0f} s +[0-9.]+ +done +{step.name}-cpu-", text, re.M)
        [output] = out.glob(f"{step.name}-cpu-*.txt")
        first = output.read_text().splitlines()[0]
        assert first == f"# python -m dirackit.bench {' '.join(step.cpu)} --device cpu" + (
            f" --data {tiny_cifar}" if step.data else "")  # the command to repeat, without --json
    rows = _table(text)
    assert [r[0] for r in rows] == [t.text for s in gpu_check.PLAN for t in s.targets]
    assert all(r[2] == "not judged (CPU plan)" for r in rows)
    # the summary's figure is the one in the step's own table
    paths_out = next(out.glob("paths-wrn-28-10-cpu-*.txt")).read_text().splitlines()
    header = next(i for i, line in enumerate(paths_out) if line.startswith("model "))
    wrn = paths_out[header + 1].split()
    assert wrn[0] == "wrn-10-1" and rows[0][1] == f"{wrn[4]} img/s" and rows[1][1] == wrn[5]
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1].startswith("written: ") and _table("\n".join(printed[:-1])) == rows  # the same table


def _outcomes(rows_by_step: dict) -> list:
    return [gpu_check.Outcome(s, status="done" if s.name in rows_by_step else "stopped at its budget of 9 s",
                              rows=rows_by_step.get(s.name)) for s in gpu_check.PLAN]


def test_the_budgets_leave_time_to_start_and_load_the_data():
    assert sum(s.budget for s in gpu_check.PLAN) <= gpu_check.TIME_LIMIT - 20 == 520  # 9 minutes


def test_verdicts_compare_each_figure_with_its_target():
    rows = _table(gpu_check._table_text(_outcomes({
        "paths-wrn-28-10": [{"fast_img_s": 12_500.0, "ratio": 3.5}],
        "paths-diracnet-34-2": [{"fast_img_s": 39_000.0, "ratio": 3.0}],
        "train-dbb": [{"model": m, "train_img_s": v} for m, v in
                      (("vgg16", 7000.0), ("vgg16-dbb", 2000.0), ("vgg16-odbb", 5100.0), ("resnet18", 9000.0),
                       ("resnet18-dbb", 3000.0), ("resnet18-odbb", 6000.0))],
        "dgmask": [{"channels": 128, "size": 32, "kronecker": 0.01, "layer": 1.0},
                   {"channels": 512, "size": 8, "kronecker": 0.06, "layer": 1.0}],
        "time-to-accuracy-wrn-16-8": [{"reached": True, "seconds": 28.4, "epoch": 12, "epochs": 15,
                                       "best_acc": 0.91}],
        "fold": [{"model": "a", "fold_speedup": 1.3}, {"model": "b", "fold_speedup": 1.02}],
    }), on_gpu=True))
    assert rows == [
        ["WRN-28-10 fast path >= 12,000 img/s", "12,500 img/s", "met"],
        ["WRN-28-10 fast / reference path >= 3.7x", "3.50x", "missed"],
        ["DiracNet-34-2 fast path >= 40,000 img/s", "39,000 img/s", "missed"],
        ["DiracNet-100-1 fast path >= 20,000 img/s", "-", "stopped at its budget of 9 s"],
        ["vgg16-odbb step time <= 1.40x vgg16's", "1.37x", "met"],
        ["resnet18-odbb step time <= 1.40x resnet18's", "1.50x", "missed"],
        ["vgg16-dbb step time (no target) vgg16's", "3.50x", "no target"],
        ["resnet18-dbb step time (no target) resnet18's", "3.00x", "no target"],
        ["G-ResNeXt-29 32x4d DGConv mask <= 5% of its layer's step", "6.0% (worst: 512@8)", "missed"],
        ["WRN-16-8 reaches 90% test accuracy in <= 30 s", "28.4 s (epoch 12/15)", "met"],
        ["folded inference >= unfolded, every model (fp32)", "1.02x (b) to 1.30x (a)", "met"],
    ]
    missed = gpu_check._time_to_90([{"reached": False, "seconds": 41.0, "best_acc": 0.874}])
    assert missed == ("not reached: best 87.4% in 41.0 s", False)


def test_a_step_runs_in_its_own_process_and_is_killed_at_its_budget(tmp_path):
    args = ["dgmask", "--layers", "8@4", "--batch-size", "2", "--steps", "1", "--repeats", "1", "--device", "cpu"]
    rows, status = gpu_check.run_step(args, tmp_path / "done.txt", budget=120, isolated=True)
    assert status == "done" and [(r["channels"], r["size"]) for r in rows] == [(8, 4)] and rows[0]["layer"] > 0
    lines = (tmp_path / "done.txt").read_text().splitlines()
    assert lines[0] == "# python -m dirackit.bench " + " ".join(args) and lines[-1].startswith("8@4 ")
    rows, status = gpu_check.run_step(args, tmp_path / "killed.txt", budget=0.2, isolated=True)
    assert rows is None and status == "stopped at its budget of 0 s"
    assert (tmp_path / "killed.txt").read_text().splitlines()[-1] == "# stopped at its budget of 0 s"


def test_steps_without_time_left_are_listed_as_not_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["gpu-check", "--device", "cpu", "--out", str(tmp_path), "--synthetic", "--time-limit", "5",
                    "--only", "dgmask", "fold"])
    assert exit_info.value.code == 1
    text = next(tmp_path.glob("gpu-check-cpu-*.txt")).read_text()
    assert re.search(r"^dgmask +20 s +- +not run: [0-5] s of the time limit left", text, re.M)
    verdicts = [r[2] for r in _table(text)]
    assert len(verdicts) == 2 and all(re.fullmatch(r"not run: [0-5] s of the time limit left", v) for v in verdicts)
    assert not list(tmp_path.glob("dgmask-*"))


def test_device_names_shorten_for_file_names(monkeypatch):
    for name, slug in (("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("Tesla T4", "t4"),
                       ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
                       ("Tesla V100-PCIE-16GB", "v100")):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert gpu_check.device_slug(torch.device("cuda")) == slug
    assert gpu_check.device_slug(torch.device("cpu")) == "cpu"


def test_cuda_asked_for_without_cuda_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["gpu-check", "--device", "cuda"])
    assert exit_info.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err
