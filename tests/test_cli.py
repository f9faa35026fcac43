"""``python -m dirackit.train``: bad input exits 2 with at most three lines on stderr, no traceback."""
import json
import subprocess
import sys

import pytest
from PIL import Image


def train(*args: str, env_data: str | None = None, tmp_path=None) -> subprocess.CompletedProcess:
    import os
    env = dict(os.environ, DIRACKIT_CACHE=str(tmp_path / "cache"))
    env.pop("DIRACKIT_DATA", None)
    if env_data:
        env["DIRACKIT_DATA"] = env_data
    return subprocess.run([sys.executable, "-m", "dirackit.train", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def image_folder(tmp_path):
    """3 classes x (8 train, 2 test) 32x32 RGB PNGs in the train|test/<class>/ layout."""
    root = tmp_path / "imgs"
    for split, n in (("train", 8), ("test", 2)):
        for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), tuple(v + 5 * i for v in colour)).save(folder / f"{i}.png")
    return root


def assert_clean_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("args, needles", [
    (["--model", "wrn-15-1"], ["6n+4", "15"]),
    (["--model", "resnet-9000"], ["unknown model", "wrn-{depth}-{width}"]),
    (["--model", "wrn-10-1", "--epochs", "0"], ["epochs must be >= 1"]),
    (["--model", "wrn-10-1", "--device", "tpu"], ["unknown device"]),
    (["--model", "wrn-10-1", "--subset", "0"], ["--subset"]),
    (["--model", "wrn-10-1", "--epochs", "two"], ["--epochs", "two"]),
    (["--model", "wrn-10-1", "--sync-bn", "--device", "cpu"], ["sync_bn needs CUDA"]),
    (["--model", "wrn-10-1", "--schedule", "poly"], ["--schedule", "poly"]),
    (["--model", "wrn-10-1", "--precision", "fp8"], ["--precision", "fp8"]),
])
def test_bad_arguments(args, needles, tmp_path, image_folder):
    assert_clean_failure(train(*args, "--out", str(tmp_path / "run"), "--data", str(image_folder),
                               tmp_path=tmp_path), *needles)


def test_missing_data_path_says_how_to_get_data(tmp_path):
    missing = tmp_path / "nowhere.tar.xz"
    assert_clean_failure(train("--model", "wrn-10-1", "--out", str(tmp_path / "run"), "--data", str(missing),
                               tmp_path=tmp_path), str(missing))


def test_train_then_resume_from_the_command_line(tmp_path, image_folder):
    common = ["--model", "wrn-10-1", "--data", str(image_folder), "--out", str(tmp_path / "run"),
              "--device", "cpu", "--no-progress", "--batch-size", "8"]
    first = train(*common, "--epochs", "1", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "done: 1 epochs" in first.stdout
    again = train(*common, "--epochs", "1", tmp_path=tmp_path)
    assert_clean_failure(again, "--resume")
    more = train(*common, "--epochs", "2", "--resume", tmp_path=tmp_path)
    assert_clean_failure(more, "epochs: 1 -> 2")  # a different recipe is a different run
    same = train(*common, "--epochs", "1", "--resume", tmp_path=tmp_path)
    assert same.returncode == 0 and "done: 1 epochs" in same.stdout


def test_time_limit_pauses_with_its_own_exit_status_and_the_same_command_continues(tmp_path, image_folder):
    from dirackit.train.__main__ import PAUSED
    command = ["--model", "wrn-10-1", "--data", str(image_folder), "--out", str(tmp_path / "run"), "--device",
               "cpu", "--no-progress", "--batch-size", "8", "--epochs", "3", "--time-limit", "0.001"]
    for epochs_done in (1, 2):  # each call trains one epoch, the least it ever trains, then pauses
        paused = train(*command, *(["--resume"] if epochs_done > 1 else []), tmp_path=tmp_path)
        assert paused.returncode == PAUSED, paused.stderr
        assert f"after {epochs_done}/3 epochs" in paused.stdout and "--resume" in paused.stdout
    command.append("--resume")
    last = train(*command, tmp_path=tmp_path)
    assert last.returncode == 0 and "done: 3 epochs" in last.stdout, last.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"]["milestones"] == [1, 2, 2]  # the WRN drops (60, 120, 160 of 200) scaled to 3 epochs
    assert_clean_failure(train(*command[:-2], "-5", tmp_path=tmp_path), "time_limit must be a positive")


@pytest.mark.parametrize("args, needle", [
    (["--out", ""], "out is an empty string"),
    (["--seed", "1e23"], "argument --seed: invalid int value: '1e23'"),
    (["--seed", str(10 ** 23)], "seed must be a whole number from 0 to 2**63 - 1"),
    (["--device", "meta"], "device 'meta' cannot train a model here"),
    (["--time-limit", "nan"], "time_limit must be a positive number of seconds, got nan"),
    (["--resume"], "cannot resume"),
    (["--model", "wrn-28-10"], "parameters, 0.4 GB as float32 weights, gradients and momentum, but this machine "
                               "has 0.0 GB of memory available"),
])
def test_careless_arguments_get_one_line_in_process(args, needle, tmp_path, image_folder, monkeypatch, capsys):
    """The same checks as test_bad_arguments, in this process (no torch import to pay for each)."""
    from dirackit.train import __main__ as cli
    monkeypatch.setenv("DIRACKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "_memory_available", lambda: 10 ** 6)  # only models over 1 MB are refused
    argv = ["--model", "wrn-10-1", "--data", str(image_folder), "--out", str(tmp_path / "run"), "--device", "cpu",
            "--no-progress", "--epochs", "1", "--batch-size", "8", *args]
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "run").exists()


def test_out_of_memory_while_training_is_one_line(tmp_path, image_folder, monkeypatch, capsys):
    from dirackit.train import __main__ as cli

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 429496729600 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setenv("DIRACKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "fit", exhausted)
    code = cli.main(["--model", "wrn-10-1", "--data", str(image_folder), "--out", str(tmp_path / "run"),
                     "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "out of memory" in err and "--batch-size" in err, err


def test_a_small_subset_gets_a_batch_that_fits_and_the_run_says_what_it_does(tmp_path, image_folder):
    result = train("--model", "wrn-10-1", "--data", str(image_folder), "--out", str(tmp_path / "run"), "--device",
                   "cpu", "--subset", "5", "--epochs", "1", "--no-progress", "--csv", str(tmp_path / "epochs.csv"),
                   tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    import dirackit as dk
    assert lines[0] == f"model   wrn-10-1: {dk.count_params(dk.build_model('wrn-10-1', num_classes=3)):,} parameters"
    assert lines[1] == "device  cpu"
    assert lines[2].startswith("data    15 train / 3 test images, 3 classes")
    assert lines[3] == "recipe  wrn: 1 epochs, batch 4, step: lr 0.1, x0.2 after epochs none"
    assert lines[4].startswith("note    batch 4 instead of the recipe's 128")
    assert lines[5] == f"out     {tmp_path / 'run'}"
    assert lines[6].startswith("training wrn-10-1 on ") and lines[6].endswith(": fp32 (precision auto on cpu)")
    assert lines[7].startswith("epoch   1/1  train loss")  # --no-progress turns off bars only
    assert "it/s" not in result.stderr  # no tqdm bar
    assert [row.split(",")[0] for row in (tmp_path / "epochs.csv").read_text().splitlines()] == ["epoch", "1"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["recipe"]["batch_size"] == 4


def test_help_shows_defaults_under_the_name_it_was_called_by(tmp_path):
    import os
    from pathlib import Path
    help_text = train("--help", tmp_path=tmp_path).stdout
    assert help_text.startswith("usage: python -m dirackit.train ")
    assert "(default: auto)" in help_text and "(default: 0)" in help_text and "(default: None)" not in help_text
    script = Path(sys.executable).with_name("dirackit-train")
    if script.is_file():  # the console script of an installed package
        env = dict(os.environ, DIRACKIT_CACHE=str(tmp_path / "cache"))
        usage = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, timeout=300).stdout
        assert usage.startswith("usage: dirackit-train ")


def test_models_are_listed_by_shell_pattern(tmp_path):
    import dirackit as dk
    assert dk.list_models("wrn-*") and all(n.startswith("wrn-") for n in dk.list_models("wrn-*"))
    assert set(dk.list_models("*-dbb")) == {"vgg16-dbb", "resnet18-dbb"} and dk.list_models("zz*") == []
    assert set(dk.list_models()) > set(dk.list_models("wrn-*"))
    listed = train("--list-models", "resnet18*", tmp_path=tmp_path)
    assert listed.returncode == 0 and [line.split()[0] for line in listed.stdout.splitlines()] == \
        dk.list_models("resnet18*")
    assert_clean_failure(train("--list-models", "zz*", tmp_path=tmp_path), "no model name matches 'zz*'")


def test_repeat_command_trains_the_same_run_again(tmp_path, image_folder, monkeypatch):
    """A run trained in Python (as notebook 00 does), its command rebuilt from config.json alone: the
    CLI's own parser reads back the same settings, and the command trains the same run."""
    import dirackit as dk
    from dirackit.train.__main__ import main
    from dirackit.train.command import build_parser, recipe_from_args, repeat_command

    monkeypatch.setenv("DIRACKIT_CACHE", str(tmp_path / "cache"))
    data = dk.load_cifar(str(image_folder), train_per_class=5, test_per_class=1)
    recipe = dk.paper_recipe("wrn-10-1", epochs=3, batch_size=5, lr=0.05, seed=3)
    torch_seed(recipe.seed)
    model = dk.build_model("wrn-10-1", num_classes=data.num_classes, dropout=0.1)
    first = dk.fit(model, data, recipe, out=tmp_path / "run", progress=False, device="cpu")

    command = repeat_command(tmp_path / "run", out=tmp_path / "again")
    assert str(command).startswith("python -m dirackit.train --model wrn-10-1 ") and not command.problems
    assert "--precision" not in command.argv  # the preset's own, so no flag
    args = build_parser().parse_args(command.argv)
    assert (args.model, args.epochs, args.batch_size, args.lr, args.schedule, args.seed, args.subset,
            args.dropout, args.device) == ("wrn-10-1", 3, 5, 0.05, "step", 3, 5, 0.1, "cpu")
    assert recipe_from_args(args) == recipe and recipe.milestones == (1, 2, 2)  # 60/120/160 of 200, scaled

    assert main([*command.argv, "--no-progress"]) == 0
    first, again = dk.RunLog.read(tmp_path / "run"), dk.RunLog.read(tmp_path / "again")
    assert again.header["recipe"] == first.header["recipe"] and again.header["data"] == first.header["data"]
    for a, b in zip(first.rows, again.rows, strict=True):
        assert (a["train_loss"], a["test_acc"]) == pytest.approx((b["train_loss"], b["test_acc"]), rel=1e-5)


def torch_seed(seed: int) -> None:
    import torch
    torch.manual_seed(seed)  # as the command line seeds before building the model


def test_repeat_command_names_a_preset_or_says_which_setting_has_no_flag(tmp_path, make_data):
    import dirackit as dk
    from dirackit.train.command import build_parser, recipe_from_args, repeat_command

    fast = dk.recipes.FAST.replace(epochs=1, batch_size=16, schedule="onecycle", precision="fp32")
    dk.fit(dk.build_model("wrn-10-1", num_classes=4), make_data(train_per_class=20, test_per_class=4), fast, out=tmp_path / "run", progress=False,
           device="cpu")
    command = repeat_command(tmp_path / "run", data="cifar10")
    args = build_parser().parse_args(command.argv)
    assert args.recipe == "fast" and recipe_from_args(args) == fast and args.data == "cifar10"
    assert args.precision == "fp32"  # given where it differs from the preset's
    assert args.out == f"{tmp_path / 'run'}-again" and args.subset == 20  # 20 train, 4 test images per class

    config = tmp_path / "run" / "config.json"
    saved = json.loads(config.read_text())
    for change, needle in [(lambda h: h["recipe"].update(warmup=0.2), "warmup=0.2"),
                           (lambda h: h["data"].update(test_images=40), "tested on 40 images"),
                           (lambda h: h["model"]["options"].update(base_channels=8), "base_channels")]:
        header = json.loads(json.dumps(saved))
        change(header)
        config.write_text(json.dumps(header))
        command = repeat_command(tmp_path / "run")
        assert command.argv == () and needle in str(command) and "cannot be repeated" in str(command)
