"""data_scripts/prepare_cifar.py: fills the cache and reports it; bad input is one line on stderr, exit 2."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from dirackit.data import sources
from dirackit.data.cache import cache_file

SCRIPT = Path(__file__).resolve().parents[2] / "data_scripts" / "prepare_cifar.py"


def prepare():
    spec = importlib.util.spec_from_file_location("prepare_cifar", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_import_an_archive(tmp_path, make_tree, make_archive, capsys):
    make_tree(tmp_path / "imgs", train=4, test=2)
    archive = make_archive(tmp_path / "imgs", tmp_path / "mini.zip")
    assert prepare()(["--archive", str(archive), "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "train    12 images, 4 per class" in out and "test     6 images, 2 per class" in out
    assert "classes  3: cat, dog, frog" in out and "mean     " in out and "std      " in out
    sha = out.split("sha256   ")[1].split()[0]
    path = cache_file(sha, tmp_path / "c")
    assert f"cache    {path} (ready in " in out and path.is_file()


def test_download_offline_is_one_line(tmp_path, monkeypatch, capsys):
    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(sources.socket, "create_connection", unreachable)
    assert prepare()(["--download", "cifar100", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot download cifar100" in err and "export DIRACKIT_DATA_CIFAR100=" in err


def test_missing_archive_from_the_command_line(tmp_path):
    missing = tmp_path / "missing.tar.xz"
    result = subprocess.run([sys.executable, str(SCRIPT), "--archive", str(missing), "--cache", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("prepare_cifar.py: error: data source not found: ")
    assert str(missing) in result.stderr


def test_dataset_checks_the_class_count(tmp_path, make_tree, make_torchvision, monkeypatch, capsys):
    make_tree(tmp_path / "imgs")  # three classes
    assert prepare()(["--archive", str(tmp_path / "imgs"), "--dataset", "cifar10", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 3 classes, not the 10 of cifar10" in err
    make_torchvision(tmp_path / "c100", "cifar100")
    monkeypatch.setenv("DIRACKIT_DATA_CIFAR100", str(tmp_path / "c100"))
    assert prepare()(["--dataset", "cifar100", "--cache", str(tmp_path / "c")]) == 0
    assert "classes  100: class000, class001" in capsys.readouterr().out
