"""Guards on the committed notebooks, and the CI run of all of them in the quick profile.

The guards need no kernel: they keep executed leftovers out of git and make sure that
ci/run_notebooks.py can run every notebook (parameters it can inject, a baseline to compare with).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

import baseline_check
import run_notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "build" / "test-notebooks"  # executed notebooks of the CI run, kept for reading
ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)\s*(:[^=]*)?=")


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {ROOT / 'notebooks'}"


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, nbformat.read(request.param, as_version=4)


def papermill_parameters(path: Path) -> dict:
    import papermill
    return papermill.inspect_notebook(str(path))


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def test_name(notebook):
    path, _ = notebook
    assert re.fullmatch(r"\d{2}_[a-z0-9_]+\.ipynb", path.name), "name it NN_lower_snake_case.ipynb"


def test_committed_without_outputs(notebook):
    _, nb = notebook
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"cells {dirty} have outputs or execution counts: clear them before committing"


def test_not_an_executed_copy(notebook):
    _, nb = notebook
    assert not tagged(nb, "injected-parameters"), "remove the injected-parameters cell"
    assert "papermill" not in nb.metadata, "remove metadata.papermill (an executed copy?)"
    assert not [c for c in nb.cells if "papermill" in c.get("metadata", {})], "remove cell papermill metadata"


def test_no_cell_prints_the_function_that_interact_returns(notebook):
    """``widgets.interact(f)`` returns ``f``: as a cell's last line it adds a stray ``<function f ...>``."""
    _, nb = notebook
    stray = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
             and re.match(r"(widgets\.)?interact(_manual)?\(.*\)$", c.source.strip().splitlines()[-1])]
    assert not stray, f"cells {stray} end with interact(...): end the line with ; or assign its result"


def test_kernel_is_python3(notebook):
    _, nb = notebook
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_one_parameters_cell_that_papermill_fully_parses(notebook):
    path, nb = notebook
    cells = tagged(nb, "parameters")
    assert len(cells) == 1, f"{len(cells)} cells tagged parameters; exactly one is needed"
    assigned = {m[1] for line in cells[0].source.splitlines() if (m := ASSIGNMENT.match(line))}
    declared = set(run_notebooks.declared_parameters(path))
    # papermill drops a line it cannot parse (e.g. a help comment containing "=") without an error
    assert declared == assigned, f"papermill does not see {sorted(assigned - declared)}"
    assert "out_dir" in declared, 'declare `out_dir: str = "..."`: the runner always sets it'


def test_every_notebook_takes_either_cifar(notebook):
    """`make course` and `--dataset cifar100` set `dataset` in every notebook; CIFAR-10 is the default."""
    path, _ = notebook
    declared = papermill_parameters(path)
    assert "dataset" in declared, 'declare `dataset: str = "cifar10"  # cifar10 or cifar100`'
    assert declared["dataset"]["default"] == '"cifar10"'


def test_quick_parameters_are_declared(notebook):
    path, _ = notebook
    params = run_notebooks.profile_parameters(path.stem, "quick", ROOT / "ci" / "params")
    assert run_notebooks.check_parameters(run_notebooks.declared_parameters(path), params) == []


def test_baseline_bounds_are_well_formed_and_name_the_settings_they_were_measured_with(notebook):
    """Each section's settings are this notebook's current ones for its profile: a changed default or
    quick parameter must come with re-measured bounds, or CI would skip them without a word."""
    path, _ = notebook
    baseline_path = ROOT / "ci" / "baselines" / f"{path.stem}.json"
    assert baseline_path.is_file(), f"write {baseline_path.relative_to(ROOT)}"
    baseline = json.loads(baseline_path.read_text())
    assert {"invariants", "quick"} <= set(baseline) <= {"invariants", "quick", "full", "quick-cifar100", "full-cifar100"}
    defaults = run_notebooks.declared_parameters(path)
    for name, section in baseline.items():
        bounds = section if name == "invariants" else section["bounds"]
        for key, bound in bounds.items():
            assert bound and set(bound) <= baseline_check.BOUND_KEYS, f"{key}: use min, max or equals"
        if name != "invariants":
            profile = name.split("-")[0]
            injected = run_notebooks.profile_parameters(path.stem, profile, ROOT / "ci" / "params")
            assert section["settings"] == baseline_check.run_settings(defaults, injected), (
                f"{baseline_path.name}'s {name!r} settings are not the notebook's: re-measure its bounds")


@pytest.mark.notebooks
def test_notebooks_pass_in_quick_profile():
    """The CI notebook run: every notebook, executed as `make course` does on a CPU."""
    from dirackit.data import DataError, resolve_source

    try:
        resolve_source()
    except DataError as error:
        pytest.skip(f"no CIFAR data: {error}")
    code = run_notebooks.main(["--profile", "quick", "--out", str(ARTIFACTS)])
    summary = json.loads((ARTIFACTS / "summary.json").read_text())
    failed = {n["notebook"]: n["reason"] for n in summary["notebooks"] if n["status"] != "passed"}
    assert code == 0 and not failed, f"{failed}; executed notebooks in {ARTIFACTS}"
