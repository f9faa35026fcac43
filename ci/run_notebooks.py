"""Execute the course notebooks with papermill and check what they produce.

    python ci/run_notebooks.py --profile quick --out build/course [NOTEBOOK ...]

Each notebook runs in its own papermill process (``execute_notebook.py``: kernel ``python3`` on Unix
sockets, working directory the notebooks folder), two at a time with one math thread per kernel:
the fastest setting measured on a 2-core machine. papermill is strict about errors in cells but
lenient elsewhere, so this runner adds the checks it lacks:

- a parameter that the notebook does not declare, or of another type than the ``parameters`` cell
  declares (its annotation, else its default's type), fails before a kernel starts (papermill only
  warns, and the wrong type surfaces later as an error in some cell);
- a cell that runs longer than the per-cell timeout fails as "cell N timed out after S s";
- an error captured by an ipywidgets ``Output`` (e.g. inside ``interactive``) fails (papermill
  never sees it: it lives only in the saved widget state);
- a figure that was saved as its text repr instead of an image fails;
- ``<out_dir>/results.json`` must exist and pass ``ci/baselines/<stem>.json`` (``baseline_check``:
  invariants under any parameters, measured bounds only under the settings they were measured with).

Profiles: ``full`` runs the defaults of each notebook's ``parameters`` cell, ``quick`` injects
``ci/params/<stem>.yaml``, ``auto`` is ``full`` when CUDA is available and ``quick`` otherwise.
The runner deletes only what it wrote: it refuses an ``--out`` that is or contains the notebooks,
parameter or baseline folders, and an existing folder it did not create (it marks its own with
``.run_notebooks``), since each run first clears ``<out>/<stem>/`` and ``<out>/<stem>.ipynb``.
``out_dir`` is always injected as ``<out>/<stem>/``, and ``dataset`` (``--dataset``, default
cifar10) wherever the notebook declares it. Executed notebooks go to ``<out>/<stem>.ipynb``,
papermill's log to ``<out>/<stem>.log``, every notebook's status and results to ``<out>/summary.json``
(paths relative to ``<out>``), and ``course_site.py`` makes the site: a page per notebook,
``<out>/<stem>.html``, and the landing page ``<out>/index.html``, all readable offline.
Exit status: 0 all passed, 1 a notebook failed, 2 nothing could start (no data, unknown notebook name).
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import papermill
import yaml

import baseline_check
import course_site

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("quick", "full", "auto")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TIMEOUT_S = {"quick": 900, "full": 4 * 3600}  # per cell: a hang fails, the slowest real cell (GPU training) fits
TIMED_OUT = 124  # execute_notebook.py's exit status when a cell ran out of time (as coreutils' timeout)
MARKER = ".run_notebooks"  # in every --out folder this runner created


@dataclass(frozen=True)
class Settings:
    """Where to read notebooks, parameters and baselines, and how to run them."""

    profile: str  # "quick" or "full" (auto is resolved before)
    out: Path
    notebooks_dir: Path = ROOT / "notebooks"
    params_dir: Path = ROOT / "ci" / "params"
    baselines_dir: Path = ROOT / "ci" / "baselines"
    jobs: int = 2
    execution_timeout: int | None = None  # per cell, seconds; None = unlimited
    dataset: str = "cifar10"  # injected into every notebook as its ``dataset`` parameter
    socket_dir: Path | None = None  # where the kernels' sockets go (a short temporary path)


@dataclass
class Outcome:
    """What happened to one notebook; one row of the summary."""

    notebook: str
    status: str = "failed"  # or "passed"
    seconds: float | None = None  # metadata.papermill.duration of the executed notebook
    reason: str = ""
    parameters: dict[str, Any] | None = None  # what was injected, out_dir aside
    results: dict[str, Any] | None = None
    executed: str | None = None  # file names in the output folder
    html: str | None = None
    log: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def resolve_profile(profile: str) -> str:
    """``auto`` means the real settings where they are meant to run (a CUDA GPU), else ``quick``."""
    if profile != "auto":
        return profile
    import torch  # only here: a quick or full run needs no torch in this process

    return "full" if torch.cuda.is_available() else "quick"


def find_notebooks(notebooks_dir: Path, names: list[str] | None = None) -> list[Path]:
    """All ``*.ipynb`` of the folder in name order, or the ones named (stem or file name)."""
    available = {p.stem: p for p in sorted(notebooks_dir.glob("*.ipynb"))}
    if not names:
        return list(available.values())
    unknown = [n for n in names if Path(n).stem not in available]
    if unknown:
        raise ValueError(f"no notebook {', '.join(unknown)} in {notebooks_dir}; "
                         f"available: {', '.join(available) or 'none'}")
    return [available[Path(n).stem] for n in names]


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names declared in the notebook's ``parameters`` cell with their default values, as papermill
    parses them."""
    return baseline_check.literal_defaults(papermill.inspect_notebook(str(path)))


def declared_types(path: Path) -> dict[str, str]:
    """The type each parameter is declared with: its annotation (``int``, ``str | None``...), else the
    type of its literal default; parameters with neither are left out."""
    types = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        annotation = info.get("inferred_type_name") or "None"
        if annotation == "None":
            try:
                annotation = type(ast.literal_eval(info.get("default") or "")).__name__
            except (ValueError, SyntaxError):
                continue
        types[name] = annotation
    return types


def check_types(declared: dict[str, str], params: dict[str, Any]) -> list[str]:
    """Injected values whose type is not the declared one (an int is accepted for a float)."""
    accepts = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
               "NoneType": (type(None),), "list": (list,), "dict": (dict,)}
    problems = []
    for name, value in params.items():
        names = [t.strip() for t in declared.get(name, "").split("|")]
        if not all(t in accepts for t in names):
            continue  # a type this check does not know: papermill and the notebook decide
        kinds = tuple(k for t in names for k in accepts[t])
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            problems.append(f"parameter {name} = {value!r} is a {type(value).__name__}, but the parameters cell "
                            f"declares {declared[name]}")
    return problems


def profile_parameters(stem: str, profile: str, params_dir: Path) -> dict[str, Any]:
    """The values a profile injects, before ``out_dir``: none for full, the YAML file for quick."""
    if profile == "full":
        return {}
    path = params_dir / f"{stem}.yaml"
    if not path.is_file():
        raise ValueError(f"the quick profile needs {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values")
    if "out_dir" in values:
        raise ValueError(f"{path} sets out_dir, which the runner always sets itself")
    return values


def check_parameters(declared: set[str] | dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Problems with the injected names; papermill would only warn and run with the defaults."""
    declared, problems = set(declared), []
    if "out_dir" not in declared:
        problems.append('the parameters cell declares no out_dir (add `out_dir: str = "..."`)')
    unknown = sorted(set(params) - declared - {"out_dir"})
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}; "
                        f"declared: {', '.join(sorted(declared)) or 'none'}")
    return problems


def widget_errors(nb: dict[str, Any]) -> list[str]:
    """Errors that ipywidgets ``Output`` widgets captured, from the widget state papermill saves.

    An exception raised inside ``interactive`` or an ``Output.capture`` callback becomes an output
    of the widget, not of the cell, so the cell succeeds and papermill exits 0.
    """
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [f"{out.get('ename')}: {out.get('evalue')}"
            for model in state.values() if model.get("model_name") == "OutputModel"
            for out in model.get("state", {}).get("outputs", [])
            if out.get("output_type") == "error"]


def unrendered_figures(nb: dict[str, Any]) -> list[str]:
    """Cells whose output is a figure's text repr with no image: the plot never showed.

    IPython only knows how to draw a bare matplotlib ``Figure`` once the inline backend has been
    loaded; without it the cell still succeeds and the saved notebook reads ``<Figure size ...>``.
    """
    return [f"In [{cell.get('execution_count')}]" for cell in nb.get("cells", [])
            for out in cell.get("outputs", [])
            if "text/plain" in out.get("data", {}) and "image/png" not in out["data"]
            and "".join(out["data"]["text/plain"]).startswith("<Figure size")]


def timed_out_cell(nb: dict[str, Any]) -> str:
    """The cell a timeout stopped, numbered as Jupyter shows it (``In [n]``): the one the kernel was
    interrupted in (its KeyboardInterrupt is the timeout's doing, not the user's)."""
    started = [cell for cell in nb.get("cells", []) if cell.get("execution_count")]
    for cell in started:
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return str(cell["execution_count"])
    return str(started[-1]["execution_count"]) if started else "?"


def cell_error(nb: dict[str, Any]) -> str | None:
    """The first error output of a cell, as ``In [n]: Name: message`` (n as JupyterLab shows it)."""
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"In [{cell.get('execution_count')}]: {out.get('ename')}: {out.get('evalue')}"
    return None


def threads_per_kernel(kernels: int) -> int:
    """Split the cores between the kernels running at once: with torch's default threads, two
    kernels on 2 cores ran ~2x slower than one after the other; with one thread each, 1.3-1.4x
    faster."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // kernels)


def execute(path: Path, executed: Path, log: Path, params: dict[str, Any], settings: Settings,
            threads: int) -> int:
    """Run papermill on one notebook in its own process; returns its exit status.

    A separate process per notebook, rather than papermill's Python API in threads, keeps the
    kernels' working directories apart (papermill changes the process cwd; nteract/papermill#578).
    execute_notebook.py is papermill with kernels on Unix sockets, so that two kernels starting
    together cannot be handed the same TCP ports.
    """
    command = [sys.executable, str(Path(__file__).with_name("execute_notebook.py")), str(path),
               str(executed), "--cwd", str(path.parent), "--parameters", json.dumps(params)]
    if settings.execution_timeout:
        command += ["--execution-timeout", str(settings.execution_timeout)]
    if settings.socket_dir:
        command += ["--socket-dir", str(settings.socket_dir / path.stem)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w") as stream:
        return subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env).returncode


def last_line(path: Path) -> str:
    """The last non-empty line of a log: where papermill says why it stopped before any cell."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "papermill failed without output"


def run_notebook(path: Path, settings: Settings, threads: int = 1) -> Outcome:
    """Check parameters, execute, then check widget errors and results against the baseline."""
    stem = path.stem
    outcome = Outcome(stem)
    try:
        params = profile_parameters(stem, settings.profile, settings.params_dir)
        declared = declared_parameters(path)
        problems = check_parameters(declared, params) or check_types(declared_types(path), params)
    except ValueError as error:
        problems = [str(error)]
    if not problems and "dataset" in declared:
        params["dataset"] = settings.dataset
    elif not problems and settings.dataset != "cifar10":
        problems = [f"the parameters cell declares no dataset, so it cannot run on {settings.dataset}"]
    if problems:
        outcome.reason = "; ".join(problems)
        return outcome

    # Stale files from an earlier run must not pass for this run's results.
    out_dir = settings.out / stem
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    executed = settings.out / f"{stem}.ipynb"
    executed.unlink(missing_ok=True)
    log = settings.out / f"{stem}.log"
    outcome.log, outcome.parameters = log.name, params
    returncode = execute(path, executed, log, {**params, "out_dir": str(out_dir)}, settings, threads)

    nb = json.loads(executed.read_text()) if executed.is_file() else {}
    if nb:
        outcome.executed = executed.name
        outcome.seconds = nb.get("metadata", {}).get("papermill", {}).get("duration")
    if returncode == TIMED_OUT:
        problems.append(f"cell {timed_out_cell(nb)} timed out after {settings.execution_timeout} s (raise "
                        f"--execution-timeout; 0 = no limit)")
    elif returncode:
        problems.append(cell_error(nb) or last_line(log))
    problems += [f"widget output captured {e}" for e in widget_errors(nb)]
    problems += [f"{cell} shows a figure as text, not as an image" for cell in unrendered_figures(nb)]
    note = ""
    if not returncode:
        outcome.results, result_problems = read_results(out_dir / "results.json")
        problems += result_problems
        if outcome.results is not None:
            baseline_problems, note = check_baseline(outcome.results, stem, settings,
                                                     baseline_check.run_settings(declared, params))
            problems += baseline_problems
    outcome.status = "failed" if problems else "passed"
    outcome.reason = "; ".join(problems) or note
    return outcome


def read_results(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The notebook's results.json, or the problem that stops reading it."""
    if not path.is_file():
        return None, [f"the notebook wrote no {path.name} in out_dir"]
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        return None, [f"{path.name} is not valid JSON: {error}"]
    if not isinstance(results, dict):
        return None, [f"{path.name} must hold a JSON object"]
    return results, []


def baseline_section(settings: Settings) -> str:
    """The baseline section that applies: the profile's name, suffixed by any dataset but CIFAR-10
    (``quick``, ``full``, ``quick-cifar100``...): bounds set on one dataset mean little on another."""
    return settings.profile if settings.dataset == "cifar10" else f"{settings.profile}-{settings.dataset}"


def check_baseline(results: dict[str, Any], stem: str, settings: Settings,
                   run_settings: dict[str, Any]) -> tuple[list[str], str]:
    """``baseline_check.check_baseline`` against ``<baselines_dir>/<stem>.json``: (problems, note).

    A CIFAR-10 run without its section fails; another dataset without one is checked for its
    invariants only, with a note."""
    path = settings.baselines_dir / f"{stem}.json"
    if not path.is_file():
        return [f"no baseline {path}"], ""
    check = baseline_check.check_baseline(results, json.loads(path.read_text()), baseline_section(settings),
                                          run_settings, required=settings.dataset == "cifar10")
    return [f"{path.name}: {p}" if p.startswith("the baseline") else p for p in check.problems], check.note


def check_out(out: Path, protected: dict[str, Path]) -> None:
    """Refuse an output folder this runner may not clear notebooks' outputs in (``protected``: the
    folders it reads, by role); raises ValueError."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the executed notebooks")
    for role, folder in protected.items():
        if folder == out or folder.is_relative_to(out):
            where = f"is the {role} folder" if folder == out else f"contains the {role} folder ({folder})"
            raise ValueError(f"--out {out} {where}, whose files a run would overwrite: choose another folder, "
                             f"e.g. build/course")
    if out.is_dir() and any(out.iterdir()) and not written_by_runner(out):
        raise ValueError(f"--out {out} already holds files this runner did not write (it marks its own folders "
                         f"with {MARKER}): choose a new or empty folder")


def written_by_runner(out: Path) -> bool:
    """The marker, or (folders written before it existed) a summary.json of this runner."""
    if (out / MARKER).is_file():
        return True
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"profile", "notebooks"} <= set(summary)


def run_all(paths: list[Path], settings: Settings) -> list[Outcome]:
    """Run the notebooks ``settings.jobs`` at a time, then make the site and summary.json; returns one
    outcome per notebook."""
    settings.out.mkdir(parents=True, exist_ok=True)
    (settings.out / MARKER).write_text("written by ci/run_notebooks.py, which may clear what it wrote here\n")
    threads = threads_per_kernel(min(settings.jobs, len(paths)))

    def one(path: Path) -> Outcome:
        try:
            outcome = run_notebook(path, settings, threads)
        except Exception as error:  # a broken notebook or baseline file fails that notebook only
            outcome = Outcome(path.stem, reason=f"{type(error).__name__}: {error}")
        seconds = "-" if outcome.seconds is None else f"{outcome.seconds:.1f} s"
        print(f"{outcome.notebook}: {outcome.status} ({seconds})", flush=True)
        return outcome

    with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
        outcomes = list(pool.map(one, paths))
    summary = {"profile": settings.profile, "dataset": settings.dataset, "passed": all(o.passed for o in outcomes),
               "notebooks": [asdict(o) for o in outcomes]}
    for note in course_site.build_site(settings.out, summary):
        print(f"course site: {note}", flush=True)
    for outcome, row in zip(outcomes, summary["notebooks"]):
        outcome.html = row["html"]
    (settings.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return outcomes


def format_table(outcomes: list[Outcome]) -> str:
    """A plain-text table: notebook, seconds, status, reason."""
    rows = [("notebook", "seconds", "status", "reason")]
    rows += [(o.notebook, "-" if o.seconds is None else f"{o.seconds:.1f}", o.status, o.reason)
             for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip()
                     for a, b, c, d in rows)


def check_data(dataset: str = "cifar10") -> str:
    """What the notebooks' default source of ``dataset`` resolves to; raises DataError (one line,
    with the fix) before any kernel starts, rather than once per notebook minutes later."""
    from dirackit.data import resolve_source

    return resolve_source(dataset=dataset)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook stems or file names (default: all)")
    parser.add_argument("--profile", choices=PROFILES, default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks",
                        help="folder for executed notebooks, logs, results and summary.json")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100"), default="cifar10",
                        help="the dataset parameter of every notebook (its data: $DIRACKIT_DATA, "
                             "$DIRACKIT_DATA_CIFAR100, else the download)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks run at the same time")
    parser.add_argument("--execution-timeout", type=int, default=None,
                        help=f"seconds a cell may run; 0 = unlimited (default: {TIMEOUT_S['quick']} for quick, "
                             f"{TIMEOUT_S['full']} for full)")
    parser.add_argument("--notebooks-dir", type=Path, default=Settings.notebooks_dir)
    parser.add_argument("--params-dir", type=Path, default=Settings.params_dir)
    parser.add_argument("--baselines-dir", type=Path, default=Settings.baselines_dir)
    parser.add_argument("--no-data-check", action="store_true",
                        help="skip the check that CIFAR is available (for notebooks without data)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_data_check:
        from dirackit.data import DataError

        try:
            print(f"data: {check_data(args.dataset)}", flush=True)
        except DataError as error:
            print(f"run_notebooks: {error}", file=sys.stderr)
            return 2
    try:
        paths = find_notebooks(args.notebooks_dir.resolve(), args.notebooks)
    except ValueError as error:
        print(f"run_notebooks: {error}", file=sys.stderr)
        return 2
    if not paths:
        print(f"run_notebooks: no notebooks in {args.notebooks_dir}", file=sys.stderr)
        return 2
    profile = resolve_profile(args.profile)
    timeout = TIMEOUT_S[profile] if args.execution_timeout is None else args.execution_timeout
    out = args.out.resolve()
    try:
        check_out(out, {"notebooks": args.notebooks_dir.resolve(), "parameters": args.params_dir.resolve(),
                        "baselines": args.baselines_dir.resolve()})
    except ValueError as error:
        print(f"run_notebooks: {error}", file=sys.stderr)
        return 2
    # The kernels' socket folders live under one folder of this run, removed even if a papermill
    # process is killed.
    socket_dir = Path(tempfile.mkdtemp(prefix="nbk-"))
    try:
        settings = Settings(profile, out, args.notebooks_dir.resolve(), args.params_dir.resolve(),
                            args.baselines_dir.resolve(), max(1, args.jobs), timeout or None, args.dataset,
                            socket_dir)
        print(f"profile: {profile}, dataset: {settings.dataset}; {len(paths)} notebook(s), {settings.jobs} at a "
              f"time -> {settings.out}",
              flush=True)
        outcomes = run_all(paths, settings)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    print(format_table(outcomes))
    for o in outcomes:
        if not o.passed and o.log:
            print(f"{o.notebook}: see {settings.out / (o.executed or o.log)}")
    print(f"open {settings.out / 'index.html'}: the course as run, every notebook as a page "
          f"(executed notebooks, logs and results.json files are in the same folder)")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
