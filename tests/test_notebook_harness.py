"""ci/run_notebooks.py catches what papermill lets through.

The fixture notebooks in tests/fixtures/notebooks/ each trip one check (make_notebooks.py says
which); one harness run executes them all in real kernels, in about the time of three notebooks.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

import baseline_check
import execute_notebook
import run_notebooks

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))  # make_notebooks, to build a notebook of a test's own


def harness(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the runner's CLI on the fixture folders, as CI runs it on the real ones."""
    command = [sys.executable, str(ROOT / "ci" / "run_notebooks.py"), "--no-data-check",
               "--notebooks-dir", FIXTURES / "notebooks", "--params-dir", FIXTURES / "params",
               "--baselines-dir", FIXTURES / "baselines", *args]
    return subprocess.run([str(a) for a in command], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quick")


@pytest.fixture(scope="module")
def quick_run(quick_out) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    proc = harness("--profile", "quick", "--out", quick_out)
    summary = json.loads((quick_out / "summary.json").read_text())
    return proc, {entry["notebook"]: entry for entry in summary["notebooks"]}


def test_a_failing_notebook_fails_the_run(quick_run):
    proc, outcomes = quick_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert set(outcomes) == {p.stem for p in (FIXTURES / "notebooks").glob("*.ipynb")}
    table = proc.stdout[proc.stdout.index("notebook "):]
    for name, outcome in outcomes.items():
        assert f"{name} " in table and outcome["status"] in table


def test_good_notebook_passes_with_injected_parameters(quick_run, quick_out):
    _, outcomes = quick_run
    good = outcomes["00_good"]
    assert good["status"] == "passed", good["reason"]
    assert good["seconds"] > 0
    executed = json.loads((quick_out / good["executed"]).read_text())
    out_dir = quick_out / "00_good"
    assert executed["metadata"]["papermill"]["parameters"] == {"score": 0.8, "out_dir": str(out_dir)}
    # cwd is the notebooks folder and the kernel got the thread limit
    threads = str(run_notebooks.threads_per_kernel(2))
    assert good["results"] == {"score": 0.8, "cwd": "notebooks", "omp_threads": threads}


@pytest.mark.parametrize("name, reason", [
    ("01_unknown_param", "unknown parameter(s) scor; declared: out_dir, score"),
    ("07_wrong_type", "parameter score = 'high' is a str, but the parameters cell declares float"),
    ("02_widget_error", "widget output captured ValueError: widget callback failed"),
    ("03_regression", "score = 0.1 < min 0.5"),
    ("04_no_results", "the notebook wrote no results.json"),
])
def test_bad_notebook_fails_with_reason(quick_run, name, reason):
    _, outcomes = quick_run
    assert outcomes[name]["status"] == "failed"
    assert reason in outcomes[name]["reason"]


def test_other_valid_settings_pass_on_the_invariants_alone(tmp_path):
    params = tmp_path / "params"
    params.mkdir()
    (params / "00_good.yaml").write_text("score: 0.3\n")  # below the quick bounds, measured at score 0.8
    proc = harness("--profile", "quick", "--out", tmp_path / "out", "--params-dir", params, "00_good")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    good = json.loads((tmp_path / "out" / "summary.json").read_text())["notebooks"][0]
    assert good["status"] == "passed" and "score=0.8 (this run: 0.3)" in good["reason"]


def test_unknown_or_mistyped_parameters_are_rejected_before_a_kernel_starts(quick_run):
    _, outcomes = quick_run
    assert outcomes["01_unknown_param"]["executed"] is None and outcomes["07_wrong_type"]["executed"] is None


@pytest.mark.parametrize("value, ok", [(3, True), (0.5, True), ("0.5", False), (True, False), (None, False)])
def test_parameter_types_follow_the_annotation_or_the_default(value, ok):
    declared = run_notebooks.declared_types(FIXTURES / "notebooks" / "05_dataset.ipynb")
    assert declared == {"dataset": "str", "score": "float", "out_dir": "str"}
    assert (run_notebooks.check_types(declared, {"score": value}) == []) == ok
    assert run_notebooks.check_types({"n": "int"}, {"n": 2.0}) == [
        "parameter n = 2.0 is a float, but the parameters cell declares int"]
    assert run_notebooks.check_types({"n": "int | None", "m": "MyType"}, {"n": None, "m": "x"}) == []


def runner_main(args: list[str], tmp_path: Path, capsys) -> tuple[int, str]:
    code = run_notebooks.main(["--no-data-check", "--notebooks-dir", str(tmp_path / "nbs"), "--params-dir",
                               str(FIXTURES / "params"), "--baselines-dir", str(FIXTURES / "baselines"), *args])
    return code, capsys.readouterr().err.strip()


def test_out_is_never_a_folder_the_runner_would_clear_unasked(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    shutil.copytree(FIXTURES / "notebooks", nbs)
    before = {p.name: p.read_bytes() for p in nbs.iterdir()}
    (tmp_path / "file").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "00_good.ipynb").write_text("someone's notebook")
    for out, needle in ((nbs, "is the notebooks folder"), (tmp_path, f"contains the notebooks folder ({nbs})"),
                        (ROOT, "contains the parameters folder"),
                        (tmp_path / "file", "is a file"), (tmp_path / "theirs", "did not write")):
        code, err = runner_main(["--out", str(out), "00_good"], tmp_path, capsys)
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert {p.name: p.read_bytes() for p in nbs.iterdir()} == before
    assert (tmp_path / "theirs" / "00_good.ipynb").read_text() == "someone's notebook"


def test_every_profile_has_a_cell_timeout(tmp_path, capsys, monkeypatch):
    shutil.copytree(FIXTURES / "notebooks", tmp_path / "nbs")
    seen = {}
    monkeypatch.setattr(run_notebooks, "run_all", lambda paths, settings: seen.update(
        {settings.profile: settings.execution_timeout}) or [])
    for profile in ("quick", "full"):
        runner_main(["--profile", profile, "--out", str(tmp_path / profile), "00_good"], tmp_path, capsys)
    assert seen == run_notebooks.TIMEOUT_S and all(seen.values())


def test_a_cell_timeout_is_reported_as_one_and_leaves_no_socket_folder(tmp_path):
    import make_notebooks

    (tmp_path / "nbs").mkdir()
    nbformat.write(make_notebooks.build(["import time\ntime.sleep(120)"]), tmp_path / "nbs" / "slow.ipynb")
    (tmp_path / "tmp").mkdir()
    command = [sys.executable, str(ROOT / "ci" / "run_notebooks.py"), "--no-data-check", "--profile", "full",
               "--execution-timeout", "1", "--notebooks-dir", str(tmp_path / "nbs"), "--out", str(tmp_path / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (outcome,) = json.loads((tmp_path / "out" / "summary.json").read_text())["notebooks"]
    number = int(re.fullmatch(r"cell (\d+) timed out after 1 s \(raise --execution-timeout; 0 = no limit\)",
                              outcome["reason"])[1])
    executed = json.loads((tmp_path / "out" / "slow.ipynb").read_text())
    assert ["".join(c["source"]) for c in executed["cells"] if c.get("execution_count") == number] == [
        "import time\ntime.sleep(120)"]
    assert not list((tmp_path / "tmp").iterdir())  # the kernels' socket folders are gone


def test_full_profile_injects_only_out_dir(tmp_path):
    proc = harness("--profile", "full", "--out", tmp_path, "00_good")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed = json.loads((tmp_path / "00_good.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"out_dir": str(tmp_path / "00_good")}
    assert json.loads((tmp_path / "00_good" / "results.json").read_text())["score"] == 0.9


def test_dataset_is_injected_where_declared(quick_run, quick_out, tmp_path):
    _, outcomes = quick_run
    assert outcomes["05_dataset"]["status"] == "passed" and outcomes["05_dataset"]["results"] == {"dataset": "cifar10"}
    assert "dataset" not in json.loads((quick_out / outcomes["00_good"]["executed"]).read_text())["metadata"][
        "papermill"]["parameters"]
    proc = harness("--profile", "full", "--dataset", "cifar100", "--out", tmp_path, "05_dataset", "00_good")
    summary = {e["notebook"]: e for e in json.loads((tmp_path / "summary.json").read_text())["notebooks"]}
    assert proc.returncode == 1 and json.loads((tmp_path / "summary.json").read_text())["dataset"] == "cifar100"
    other = summary["05_dataset"]  # no full-cifar100 baseline: passes, and says its results went unchecked
    assert other["status"] == "passed" and other["results"] == {"dataset": "cifar100"}
    assert other["reason"] == "full-cifar100 bounds not checked: the baseline has no 'full-cifar100' section"
    assert summary["00_good"]["reason"] == "the parameters cell declares no dataset, so it cannot run on cifar100"
    assert summary["00_good"]["executed"] is None


def test_missing_data_stops_before_any_notebook(monkeypatch, tmp_path, capsys):
    from dirackit.data import DataError

    def no_data(dataset):
        raise DataError(f"no {dataset} found: export DIRACKIT_DATA=/path/to/cifar10-jpeg.tar.xz")

    monkeypatch.setattr(run_notebooks, "check_data", no_data)
    assert run_notebooks.main(["--profile", "quick", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "run_notebooks: no cifar10 found: export DIRACKIT_DATA=/path/to/cifar10-jpeg.tar.xz")
    assert not any(tmp_path.iterdir())


def test_unknown_notebook_name_is_a_usage_error(tmp_path, capsys):
    argv = ["--no-data-check", "--notebooks-dir", str(FIXTURES / "notebooks"), "--out", str(tmp_path),
            "99_missing"]
    assert run_notebooks.main(argv) == 2
    assert "no notebook 99_missing" in capsys.readouterr().err


@pytest.mark.parametrize("results, bounds, problem", [
    ({"acc": 0.5}, {"acc": {"min": 0.2, "max": 0.9}}, None),
    ({"acc": 0.1}, {"acc": {"min": 0.2}}, "acc = 0.1 < min 0.2"),
    ({"err": 0.3}, {"err": {"max": 1e-5}}, "err = 0.3 > max 1e-05"),
    ({"epochs": 2}, {"epochs": {"equals": 2}}, None),
    ({"epochs": 3}, {"epochs": {"equals": 2}}, "epochs = 3, expected 2"),
    ({}, {"acc": {"min": 0.2}}, "results.json has no acc"),
    ({"acc": float("nan")}, {"acc": {"min": 0.2}}, "acc = nan is not a number"),
    ({"acc": "high"}, {"acc": {"min": 0.2}}, "acc = 'high' is not a number"),
    ({"acc": 0.5}, {"acc": {"minimum": 0.2}}, "baseline for acc must use min, max or equals"),
])
def test_check_bounds(results, bounds, problem):
    problems = baseline_check.check_bounds(results, bounds)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


BASELINE = {"invariants": {"fold_error": {"max": 1e-5}},
            "quick": {"settings": {"depth": 52, "epochs": 4}, "bounds": {"params": {"equals": 759386},
                                                                        "acc": {"min": 0.18}}}}


def test_bounds_apply_only_to_the_settings_they_were_measured_with():
    measured = baseline_check.check_baseline({"fold_error": 1e-7, "params": 759386, "acc": 0.3}, BASELINE, "quick",
                                             {"depth": 52, "epochs": 4})
    assert measured.problems == [] and measured.note == "quick bounds and invariants checked"
    regressed = baseline_check.check_baseline({"fold_error": 1e-7, "params": 759386, "acc": 0.1}, BASELINE,
                                              "quick", {"depth": 52, "epochs": 4})
    assert regressed.problems == ["acc = 0.1 < min 0.18"]
    other = baseline_check.check_baseline({"fold_error": 1e-7, "params": 1076650, "acc": 0.1}, BASELINE, "quick",
                                          {"depth": 22, "epochs": 4})
    assert other.problems == [] and "depth=52 (this run: 22)" in other.note and "skipped" in other.note
    broken = baseline_check.check_baseline({"fold_error": 0.2, "params": 1, "acc": 0.1}, BASELINE, "quick",
                                           {"depth": 22, "epochs": 4})
    assert broken.problems == ["fold_error = 0.2 > max 1e-05"]  # invariants hold under any settings


def test_invariants_catch_non_finite_numbers_and_verdicts_that_contradict_their_interval():
    claims = [{"claim": "a beats b", "verdict": "shown", "low": 0.01, "high": 0.05},
              {"claim": "c beats d", "verdict": "shown", "low": -0.01, "high": 0.05},
              {"claim": "folding is exact", "verdict": "shown", "low": None, "high": None}]
    check = baseline_check.check_baseline({"loss": [1.0, float("nan")], "claims": claims}, {"invariants": {}},
                                          "quick", {}, required=False)
    assert check.problems == [
        "results.loss[1] = nan",
        "claim 'c beats d' says 'shown' but its interval [-0.01, 0.05] means 'within noise at this size'"]
    assert "no 'quick' section" in check.note


def test_baseline_needs_settings_beside_its_bounds():
    check = baseline_check.check_baseline({}, {"quick": {"acc": {"min": 0.1}}}, "quick", {})
    assert check.problems == ["the baseline's 'quick' section must hold settings and bounds, got ['acc']"]


def test_check_parameters_requires_out_dir():
    assert run_notebooks.check_parameters({"epochs"}, {"epochs": 1}) == [
        'the parameters cell declares no out_dir (add `out_dir: str = "..."`)']


def test_widget_errors_reads_only_output_widgets():
    state = {"a": {"model_name": "OutputModel", "state": {"outputs": [
                 {"output_type": "stream", "text": "fine"},
                 {"output_type": "error", "ename": "KeyError", "evalue": "'x'"}]}},
             "b": {"model_name": "IntSliderModel", "state": {"value": 3}}}
    nb = {"metadata": {"widgets": {run_notebooks.WIDGET_STATE: {"state": state}}}}
    assert run_notebooks.widget_errors(nb) == ["KeyError: 'x'"]
    assert run_notebooks.widget_errors({"metadata": {}}) == []


def test_unrendered_figures_are_found():
    figure_text = {"text/plain": ["<Figure size 640x480 with 1 Axes>"]}
    nb = {"cells": [{"cell_type": "code", "execution_count": 2, "outputs": [{"data": dict(figure_text)}]},
                    {"cell_type": "code", "execution_count": 3,
                     "outputs": [{"data": {**figure_text, "image/png": "iVBOR..."}}]},
                    {"cell_type": "code", "execution_count": 4, "outputs": [{"data": {"text/plain": "42"}}]}]}
    assert run_notebooks.unrendered_figures(nb) == ["In [2]"]


def test_cell_error_names_the_cell_as_jupyter_numbers_it():
    nb = {"cells": [{"cell_type": "markdown", "source": "papermill banner"},
                    {"cell_type": "code", "execution_count": 4, "outputs": [
                        {"output_type": "error", "ename": "RuntimeError", "evalue": "boom"}]}]}
    assert run_notebooks.cell_error(nb) == "In [4]: RuntimeError: boom"
    assert run_notebooks.cell_error({"cells": []}) is None


def test_kernels_talk_over_sockets_of_their_own(tmp_path):
    """Two kernels started together must not share TCP ports or socket files."""
    cell = ("import pathlib; from ipykernel import get_connection_info\n"
            "pathlib.Path(out_dir, 'conn.json').write_text(get_connection_info())")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("out_dir = ''", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(cell)]
    source = tmp_path / "conn.ipynb"
    nbformat.write(nb, source)
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        command = [sys.executable, str(ROOT / "ci" / "execute_notebook.py"), str(source),
                   str(tmp_path / f"{name}.ipynb"), "--cwd", str(tmp_path),
                   "--parameters", json.dumps({"out_dir": str(tmp_path / name)})]
        runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stdout.read()
    infos = [json.loads((tmp_path / name / "conn.json").read_text()) for name in ("a", "b")]
    assert all(info["transport"] == "ipc" for info in infos)
    assert infos[0]["ip"] != infos[1]["ip"]
    assert all(Path(info["ip"]).is_absolute() and not Path(info["ip"]).parent.exists() for info in infos)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a.ipynb", "b", "b.ipynb", "conn.ipynb"]


def test_the_run_is_a_site_that_needs_nothing_from_outside(quick_run, quick_out):
    proc, outcomes = quick_run
    good, site = outcomes["00_good"], outcomes["06_site"]
    assert (good["executed"], good["html"], good["log"]) == ("00_good.ipynb", "00_good.html", "00_good.log")
    assert outcomes["01_unknown_param"]["html"] is None  # never executed
    assert str(quick_out) not in (quick_out / "summary.json").read_text()  # paths relative to the site
    executed = json.loads((quick_out / good["executed"]).read_text())
    last = "".join(executed["cells"][-1]["outputs"][0]["data"]["text/plain"])  # write_text's byte count
    page = (quick_out / good["html"]).read_text()
    assert f"<pre>{last}</pre>" in page and "application/vnd.jupyter.widget-state+json" in page
    for html in (page, (quick_out / site["html"]).read_text()):
        sources = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
        assert sources and all((quick_out / src.split("?")[0]).is_file() for src in sources), sources

    # A page is titled by its first heading, and each widget carries a static rendering of its state.
    page = (quick_out / site["html"]).read_text()
    assert "<title>06 · The site's fixture: math, a bokeh plot and widgets</title>" in page
    views = [o for c in json.loads((quick_out / site["executed"]).read_text())["cells"]
             for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert page.count('class="dk-static"') == len(views) == 2
    assert "k: <b>3</b>" in page and "<pre>the button was pressed 0 times\n</pre>" in page
    assert '<span class="dk-button">Press me</span>' in page

    index = (quick_out / "index.html").read_text()
    assert all(f'href="{o["html"]}"' in index for o in outcomes.values() if o["html"])
    assert "06 · The site&#39;s fixture" in index and "the fixture renders offline" in index  # title, claim
    assert "No claims recorded" in index and "Quick profile" in index
    assert "index.html" in proc.stdout


@pytest.mark.parametrize("patient", [False, True])
def test_a_missed_wakeup_stalls_the_plain_client_but_not_the_patient_one(patient):
    """The hang of papermill under load, made deterministic: the message arrives, but the socket's
    edge-triggered FD is read before the event loop sees it."""
    async def receive() -> str:
        ctx = zmq.asyncio.Context()
        sender, receiver = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        sender.bind("inproc://missed-wakeup")
        receiver.connect("inproc://missed-wakeup")
        session = Session()
        channel = (execute_notebook.PatientChannel if patient else AsyncZMQSocketChannel)(receiver, session)
        try:
            waiting = asyncio.ensure_future(channel.get_msg(timeout=None))
            await asyncio.sleep(0.2)  # get_msg now waits on the socket's FD
            session.send(zmq.Socket.shadow(sender.underlying), "status", {"execution_state": "idle"})
            zmq.Socket.shadow(receiver.underlying).getsockopt(zmq.EVENTS)  # consumes the wake-up
            return (await asyncio.wait_for(waiting, 3 * execute_notebook.POLL_SLICE_S))["msg_type"]
        except asyncio.TimeoutError:
            return "stalled"
        finally:
            sender.close(0)
            receiver.close(0)
            ctx.term()

    assert asyncio.run(receive()) == ("status" if patient else "stalled")


def test_patient_channel_still_times_out():
    async def wait() -> float:
        ctx = zmq.asyncio.Context()
        socket = ctx.socket(zmq.PAIR)
        socket.bind("inproc://silent")
        t0 = time.monotonic()
        try:
            with pytest.raises(Empty):
                await execute_notebook.PatientChannel(socket, Session()).get_msg(timeout=0.3)
            return time.monotonic() - t0
        finally:
            socket.close(0)
            ctx.term()

    assert 0.25 < asyncio.run(wait()) < 1.0
