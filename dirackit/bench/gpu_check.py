"""``gpu-check``: every measurement of the performance targets of ``benchmarks/README.md`` in one command.

Made for a short lend of a GPU: the steps run in order of value (the headline WRN-28-10 figures
first), each stopped at its own time budget, and the plan fits in 9 minutes on one H100 or H200. A
step is one ``python -m dirackit.bench`` command, so nothing is measured here twice: its output goes
to ``OUT/<step>-<device>-<date>.txt`` line by line as it is printed, and ``OUT/gpu-check-<device>-
<date>.txt`` (what each step did, and one table of target, measured, verdict) is rewritten after
every step, so a check that is killed keeps what it had measured.

On CUDA each step runs in a process of its own: a compile that hangs is killed at the step's
budget, and a CUDA error or a half-recorded CUDA graph cannot spoil the steps after it. Without CUDA
the same plan runs at tiny sizes on the CPU (a small member of each family, a few images, one timed
round), in this process with an alarm for each budget, since starting Python and torch again for
every step would cost more than the steps. Its figures show that the plan runs, not whether the
targets are met, so it gives no verdicts.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, TextIO

import torch

from ..atomic import atomic_write
from ..precision import describe_precision
from .inputs import bench_data

__all__ = ["Step", "Target", "PLAN", "TIME_LIMIT", "add_gpu_check", "gpu_check", "run_step", "device_slug"]

TIME_LIMIT = 540.0  # seconds for the whole check: 9 minutes
MIN_STEP = 10.0     # a step is not started with less time than this left


class Target(NamedTuple):
    """One performance target and how to read it off its step's rows: ``(measured text, met or None)``;
    None means the figure has no target and is shown for comparison."""

    text: str
    read: Callable[[list[dict]], tuple[str, bool | None]]


@dataclass(frozen=True)
class Step:
    """One bench command of the plan, as run on a GPU and at tiny sizes on the CPU."""

    name: str                 # names its output file
    budget: float             # seconds on a GPU, process start-up and data loading included
    gpu: tuple[str, ...]      # the command's arguments on a GPU
    cpu: tuple[str, ...]      # the same measurement at tiny sizes on the CPU
    targets: tuple[Target, ...]
    data: bool = False        # takes --data / --synthetic
    needs_cifar: bool = False  # meaningless on synthetic images (an accuracy)


def _paths_targets(label: str, img_s: float, ratio: float | None = None) -> tuple[Target, ...]:
    def speed(rows: list[dict]) -> tuple[str, bool]:
        return f"{rows[0]['fast_img_s']:,.0f} img/s", rows[0]["fast_img_s"] >= img_s

    def fast_over_reference(rows: list[dict]) -> tuple[str, bool]:
        return f"{rows[0]['ratio']:.2f}x", rows[0]["ratio"] >= ratio

    targets = [Target(f"{label} fast path >= {img_s:,.0f} img/s", speed)]
    if ratio is not None:
        targets.append(Target(f"{label} fast / reference path >= {ratio}x", fast_over_reference))
    return tuple(targets)


def _step_ratio(plain: str, branched: str, limit: float | None) -> Target:
    """A branched net's training step time over its plain counterpart's (``train`` times them in turns)."""
    def read(rows: list[dict]) -> tuple[str, bool | None]:
        img_s = {r["model"]: r["train_img_s"] for r in rows}
        ratio = img_s[plain] / img_s[branched]
        return f"{ratio:.2f}x", None if limit is None else ratio <= limit

    return Target(f"{branched} step time {'<= ' + format(limit, '.2f') + 'x' if limit else '(no target)'} "
                  f"{plain}'s", read)


def _mask_share(rows: list[dict]) -> tuple[str, bool]:
    worst = max(rows, key=lambda r: r["kronecker"] / r["layer"])
    share = worst["kronecker"] / worst["layer"]
    return f"{share:.1%} (worst: {worst['channels']}@{worst['size']})", share <= 0.05


def _time_to_90(rows: list[dict]) -> tuple[str, bool]:
    r = rows[0]
    if r["reached"]:
        return f"{r['seconds']:.1f} s (epoch {r['epoch']}/{r['epochs']})", r["seconds"] <= 30
    return f"not reached: best {r['best_acc']:.1%} in {r['seconds']:.1f} s", False


def _fold_speedups(rows: list[dict]) -> tuple[str, bool]:
    low, high = min(rows, key=lambda r: r["fold_speedup"]), max(rows, key=lambda r: r["fold_speedup"])
    return (f"{low['fold_speedup']:.2f}x ({low['model']}) to {high['fold_speedup']:.2f}x ({high['model']})",
            low["fold_speedup"] >= 1)


_TINY = ("--steps", "1", "--repeats", "1")
_TINY_PATHS = ("--batch-size", "8", *_TINY, "--workers", "0", "--peak-size", "64")
_DBB = ("vgg16", "vgg16-dbb", "vgg16-odbb", "resnet18", "resnet18-dbb", "resnet18-odbb")

# In order of value. Budgets: WRN-28-10's default-mode compile and the DiracNets' CUDA-graph compiles
# dominate; the sum (515 s) leaves the rest of 9 minutes for start-up and decoding the data once.
PLAN: tuple[Step, ...] = (
    Step("paths-wrn-28-10", 130,
         ("paths", "--models", "wrn-28-10", "--fast-batch-size", "512", "--compile", "default"),
         ("paths", "--models", "wrn-10-1", *_TINY_PATHS),
         _paths_targets("WRN-28-10", 12_000, 3.7), data=True),
    Step("paths-diracnet-34-2", 100,
         ("paths", "--models", "diracnet-34-2", "--fast-batch-size", "512", "--compile", "reduce-overhead"),
         ("paths", "--models", "diracnet-10-1", *_TINY_PATHS, "--compile", "reduce-overhead"),
         _paths_targets("DiracNet-34-2", 40_000), data=True),
    Step("paths-diracnet-100-1", 120,
         ("paths", "--models", "diracnet-100-1", "--fast-batch-size", "512", "--compile", "reduce-overhead"),
         ("paths", "--models", "diracnet-16-1", *_TINY_PATHS, "--compile", "reduce-overhead"),
         _paths_targets("DiracNet-100-1", 20_000), data=True),
    Step("train-dbb", 45,
         ("train", "--models", *_DBB, "--batch-size", "128"),
         ("train", "--models", *_DBB, "--batch-size", "2", *_TINY),
         (_step_ratio("vgg16", "vgg16-odbb", 1.4), _step_ratio("resnet18", "resnet18-odbb", 1.4),
          _step_ratio("vgg16", "vgg16-dbb", None), _step_ratio("resnet18", "resnet18-dbb", None))),
    Step("dgmask", 20,
         ("dgmask", "--batch-size", "128"),
         ("dgmask", "--layers", "16@8", "32@4", "--batch-size", "2", *_TINY),
         (Target("G-ResNeXt-29 32x4d DGConv mask <= 5% of its layer's step", _mask_share),)),
    Step("time-to-accuracy-wrn-16-8", 60,
         ("time-to-accuracy", "--models", "wrn-16-8", "--recipe", "fast", "--target", "0.90"),
         ("time-to-accuracy", "--models", "wrn-10-1", "--recipe", "fast", "--epochs", "1", "--batch-size", "16",
          "--subset", "4", "--target", "0.90"),
         (Target("WRN-16-8 reaches 90% test accuracy in <= 30 s", _time_to_90),), data=True, needs_cifar=True),
    Step("fold", 40,
         ("fold", "--models", "diracnet-34-2", "diracnet-100-1", "vgg16-dbb", "vgg16-odbb", "resnet18-dbb",
          "g-resnext-29-32x4d", "--batch-size", "256"),
         ("fold", "--models", "diracnet-10-1", "vgg16-odbb", "g-resnext-11-8x4d", "--batch-size", "2", *_TINY),
         (Target("folded inference >= unfolded, every model (fp32)", _fold_speedups),)),
)


@dataclass
class Outcome:
    """What one step did: its status line, seconds, output file, and rows if it finished."""

    step: Step
    status: str = "not run"
    seconds: float | None = None
    output: str = ""
    rows: list[dict] | None = field(default=None, repr=False)


def add_gpu_check(sub: argparse._SubParsersAction) -> None:
    summary = "every measurement of the performance targets in one command, each step within its time budget"
    p = sub.add_parser("gpu-check", help=summary, description=summary + ". Without CUDA the same plan runs at "
                       "tiny sizes on the CPU.")
    p.add_argument("--out", default="benchmarks", help="folder for each step's output and the summary "
                                                       "(default: benchmarks)")
    p.add_argument("--time-limit", type=float, default=TIME_LIMIT,
                   help=f"seconds for the whole check (default: {TIME_LIMIT:.0f}); a step gets its budget or "
                        f"what is left, whichever is less")
    p.add_argument("--only", nargs="+", metavar="STEP", choices=[s.name for s in PLAN],
                   help=f"run these steps only: {', '.join(s.name for s in PLAN)}")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="auto: the GPU plan on CUDA, else the tiny CPU plan")
    p.add_argument("--data", default=None, help="CIFAR source as for load_cifar (default: $DIRACKIT_DATA, else "
                                                "the cached CIFAR-10); never downloads")
    p.add_argument("--synthetic", action="store_true", help="random uint8 images instead of CIFAR")


def device_slug(device: torch.device) -> str:
    """A short name for file names: ``h100`` for "NVIDIA H100 80GB HBM3", ``t4``, ``rtx-4090``; ``cpu``."""
    if device.type != "cuda":
        return device.type
    words = re.sub(r"\b(NVIDIA|Tesla|GeForce)\b", "", torch.cuda.get_device_name(device)).split()
    kept = []
    for word in words:
        kept.append(word.split("-")[0])
        if any(c.isdigit() for c in word):
            break
    return re.sub(r"[^a-z0-9]+", "-", "-".join(kept).lower()).strip("-") or "cuda"


def gpu_check(args: argparse.Namespace, argv: list[str], parser: argparse.ArgumentParser) -> int:
    """Run the plan; 0 when every step ran to its end (whatever the verdicts), else 1."""
    from .cli import header

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("device 'cuda' was asked for but this torch sees no CUDA GPU; use --device auto or cpu")
    if args.time_limit <= 0:
        parser.error(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    started = time.perf_counter()
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    out, day = Path(args.out), date.today().isoformat()
    slug = device_slug(device)
    summary = out / f"gpu-check-{slug}-{day}.txt"
    steps = [s for s in PLAN if args.only is None or s.name in args.only]
    outcomes = [Outcome(s, output=f"{s.name}-{slug}-{day}.txt") for s in steps]
    lead = [header(device, argv)]
    lead.append("plan: on CUDA, at the targets' sizes; each step in its own process" if on_gpu else
                "plan: no CUDA here, so the same plan at tiny sizes on the CPU (a small member of each family, a "
                "few images, one timed round), in this process; it shows that the plan runs, not the targets, so "
                "no verdicts")
    lead.append(f"precision: {describe_precision('auto', device)}")
    data_args, about = _data(args)
    lead.append(f"data: {about} ({time.perf_counter() - started:.1f} s to load)")
    print("\n".join(lead), flush=True)
    _write_summary(summary, lead, outcomes, on_gpu)
    deadline = started + args.time_limit
    with _terminate_as_interrupt():
        try:
            for o in outcomes:
                left = deadline - time.perf_counter()
                if o.step.needs_cifar and on_gpu and "--synthetic" in data_args:
                    o.status = "not run: needs CIFAR (pass --data SOURCE)"
                elif left < MIN_STEP:
                    o.status = f"not run: {left:.0f} s of the time limit left"
                else:
                    cli_args = [*(o.step.gpu if on_gpu else o.step.cpu), "--device", device.type,
                                *(data_args if o.step.data else ())]
                    budget = min(o.step.budget, left)
                    print(f"== {o.step.name} (budget {budget:.0f} s): python -m dirackit.bench "
                          f"{' '.join(cli_args)}", flush=True)
                    t0 = time.perf_counter()
                    o.rows, o.status = run_step(cli_args, out / o.output, budget, isolated=on_gpu)
                    o.seconds = time.perf_counter() - t0
                _write_summary(summary, lead, outcomes, on_gpu)
        except KeyboardInterrupt:
            running = next((o for o in outcomes if o.status == "not run"), None)
            if running is not None:
                running.status = "interrupted"
            _write_summary(summary, lead, outcomes, on_gpu)
            print(f"interrupted; what was measured is in {summary}", flush=True)
            return 1
    print(_table_text(outcomes, on_gpu), flush=True)
    print(f"written: {summary} and each step's output beside it", flush=True)
    return 0 if all(o.status == "done" for o in outcomes) else 1


def _data(args: argparse.Namespace) -> tuple[list[str], str]:
    """The data arguments for the steps that take data, after loading it once here: the first load of
    an archive decodes it into the cache, which every step then reads in about a second."""
    if args.synthetic:
        return ["--synthetic"], "synthetic uint8 images (--synthetic)"
    data, about = bench_data(args.data)
    if data.source == "synthetic":
        return ["--synthetic"], about
    return (["--data", args.data] if args.data else []), about


def run_step(cli_args: list[str], output: Path, budget: float, isolated: bool) -> tuple[list[dict] | None, str]:
    """Run ``python -m dirackit.bench CLI_ARGS`` for at most ``budget`` seconds, its output written to
    ``output`` as it comes; returns its rows (None unless it finished) and a status line."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as log, tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        run = _in_process if not isolated else _in_subprocess
        status = run([*cli_args, "--json", str(rows_file)], log, budget)
        if status == "done":
            return json.loads(rows_file.read_text()), status
        print(f"# {status}", file=log)
        return None, status


def _in_subprocess(cli_args: list[str], log: TextIO, budget: float) -> str:
    package_root = str(Path(__file__).resolve().parents[2])  # dirackit importable without installing it
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
    proc = subprocess.Popen([sys.executable, "-m", "dirackit.bench", *cli_args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    copier = threading.Thread(target=_copy_lines, args=(proc.stdout, log), daemon=True)
    copier.start()
    try:
        code = proc.wait(timeout=budget)
    except BaseException as stop:  # the budget, or an interrupt of the whole check: end the step's processes
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        copier.join()
        if not isinstance(stop, subprocess.TimeoutExpired):
            raise
        return f"stopped at its budget of {budget:.0f} s"
    copier.join()
    return "done" if code == 0 else f"failed (exit status {code}): {_last_line(log)}"


def _copy_lines(source: TextIO, log: TextIO) -> None:
    for line in source:
        log.write(line)
        log.flush()
        sys.stdout.write(line)
        sys.stdout.flush()


class _OverBudget(Exception):
    """Raised by the alarm when an in-process step reaches its budget."""


def _in_process(cli_args: list[str], log: TextIO, budget: float) -> str:
    from .cli import main

    tee = _Tee(log, sys.stdout)
    try:
        with _alarm(budget), contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            main(cli_args)
    except _OverBudget:
        return f"stopped at its budget of {budget:.0f} s"
    except SystemExit as exit_:
        return f"failed (exit status {exit_.code}): {_last_line(log)}"
    except Exception as error:  # noqa: BLE001 - a failed step is reported and the plan goes on
        log.write(traceback.format_exc())
        return f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return "done"


class _Tee:
    """A text stream writing to a log file (flushed every write) and to the terminal."""

    def __init__(self, log: TextIO, terminal: TextIO):
        self.log, self.terminal = log, terminal

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        return self.terminal.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise ``_OverBudget`` after ``seconds`` (main thread, where SIGALRM exists; elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum, frame):
        raise _OverBudget

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a job's time limit) ends the check as Ctrl-C does: the summary is written first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _last_line(log: TextIO) -> str:
    log.flush()
    lines = [line for line in Path(log.name).read_text().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _table_text(outcomes: list[Outcome], on_gpu: bool) -> str:
    rows = []
    for o in outcomes:
        for target in o.step.targets:
            if o.rows is None:
                rows.append([target.text, "-", o.status])
                continue
            measured, met = target.read(o.rows)
            verdict = "no target" if met is None else ("met" if met else "missed")
            rows.append([target.text, measured, verdict if on_gpu else "not judged (CPU plan)"])
    return _columns(["target", "measured", "verdict"], rows)


def _columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(map(len, column)) for column in zip(header, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in (header, *rows))


def _write_summary(path: Path, lead: list[str], outcomes: list[Outcome], on_gpu: bool) -> None:
    steps = _columns(["step", "budget", "seconds", "status", "output"],
                     [[o.step.name, f"{o.step.budget:.0f} s",
                       "-" if o.seconds is None else f"{o.seconds:.1f}", o.status, o.output] for o in outcomes])
    text = "\n".join([*lead, "", steps, "", _table_text(outcomes, on_gpu), ""])
    atomic_write(path, lambda f: f.write(text.encode()))
