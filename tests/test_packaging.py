"""The conda path (environment.yml) and the pip path (Makefile, README) install the same things.

Both install requirements/torch.txt and the package with the same extras; these tests keep them
from drifting apart and check that the pins satisfy pyproject's ranges. conda itself is not run.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIP_LINES = ["-r requirements/torch.txt", "-e .[notebooks,test]"]


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def pip_section(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs one pip: section"
    return sections[0]


def pinned() -> list[Requirement]:
    lines = (ROOT / "requirements" / "torch.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_environment_channels_and_python():
    env = environment()
    assert env["channels"] == ["conda-forge", "nodefaults"]
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert python == ["python=3.11"]
    assert "3.11" in SpecifierSet(PYPROJECT["requires-python"])


def test_environment_pip_section_matches_the_makefile_install():
    assert pip_section(environment()) == PIP_LINES
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install -r requirements/torch.txt -e ".[notebooks,test]"' in makefile


def test_named_extras_exist():
    extras = re.search(r"\[(.*)\]", PIP_LINES[1]).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["optional-dependencies"])


def test_pins_satisfy_pyproject():
    """Every pinned package is a dependency of the package, in a version pyproject accepts."""
    ranges = {canonicalize_name(r.name): r.specifier
              for r in map(Requirement, PYPROJECT["dependencies"])}
    pins = pinned()
    assert {canonicalize_name(p.name) for p in pins} == {"torch", "torchvision"}
    for pin in pins:
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        assert version in ranges[canonicalize_name(pin.name)], f"{pin} is outside pyproject's range"


def test_harness_dependencies_are_installed_by_the_notebooks_extra():
    """`make course` runs ci/run_notebooks.py, which imports papermill and yaml."""
    names = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["optional-dependencies"]["notebooks"]}
    assert {"papermill", "pyyaml", "ipykernel"} <= names


def test_a_cpu_wheel_index_installs_torch_before_the_package(tmp_path):
    """`make install TORCH_INDEX=...` takes torch and torchvision from that index first, so the package's
    own install finds the pins satisfied and never fetches the CUDA build."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv, index = tmp_path / "venv", "https://download.pytorch.org/whl/cpu"
    plan = subprocess.run(["make", "-n", "install", f"VENV={venv}", f"TORCH_INDEX={index}"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    pip = [line for line in plan if " -m pip install " in line]
    assert pip == [f"{venv}/bin/python -m pip install -r requirements/torch.txt --index-url {index}",
                   f'{venv}/bin/python -m pip install -r requirements/torch.txt -e ".[notebooks,test]"']
    plain = subprocess.run(["make", "-n", "install", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    assert "--index-url" not in plain
