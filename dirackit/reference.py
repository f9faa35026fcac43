"""Reference runs: each paper's recipe on CIFAR-10, trained on a GPU, their logs shipped in ``results/``.

``PLAN`` lists the runs in priority order. ``python -m dirackit.reference run --budget SECONDS``
trains the first unfinished one (then the next, while time is left), resuming across commands, so a
plan of hours fits in job slots of minutes. ``export`` copies each run's log and provenance (never
its checkpoint) into ``results/``, where the notebooks read them without a GPU; ``table`` sets the
accuracies beside the papers'. The learned-state summaries (DiracNet a/b per layer, DGConv gates,
DBB branch shares) are in every log row, written by the models' ``log_state()``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Sequence

import torch

from .data import CifarData, load_cifar
from .recipes import Recipe, get_recipe
from .registry import build_model
from .checkpoint import CheckpointError
from .runlog import CONFIG, LOG, RunLog
from .train import TrainingDiverged, fit

__all__ = ["Reference", "PLAN", "run_plan", "export", "table", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 2 * 1024 * 1024  # what one shipped file may weigh: the repository stays small
PAUSED = 75  # exit status when the budget ran out before the plan was done (as python -m dirackit.train)


@dataclass(frozen=True)
class Reference:
    """One reference run: a model, its paper's recipe at full length, a seed, and the paper's CIFAR-10
    test error."""

    name: str
    model: str
    recipe: str
    seed: int = 0
    paper_error: float | None = None  # %, CIFAR-10; None where the paper has no such row
    paper_source: str = ""

    @property
    def planned_epochs(self) -> int:
        return get_recipe(self.recipe).epochs


_WRN = "WRN paper, final table (median of 5)"
_DIRAC = "DiracNet paper, Fig. 1 (median of 5, read off the plot, +-0.1)"
_DBB = "DBB paper, Table 2 (mean of 5)"

# Priority order: the headline networks first, then the controls, then the extra seeds that turn the
# headline comparisons (DiracNet vs plain, DBB vs plain) into 3-seed ones.
PLAN: tuple[Reference, ...] = (
    Reference("wrn-28-10", "wrn-28-10", "wrn", paper_error=4.00, paper_source=_WRN),
    Reference("diracnet-34-2", "diracnet-34-2", "diracnet", paper_error=6.4, paper_source=_DIRAC),
    Reference("plain-34-2", "plain-34-2", "diracnet"),
    Reference("wrn-16-8", "wrn-16-8", "wrn", paper_error=4.27, paper_source=_WRN),
    Reference("vgg16-dbb", "vgg16-dbb", "dbb", paper_error=5.38, paper_source=_DBB),
    Reference("vgg16", "vgg16", "dbb", paper_error=6.05, paper_source=_DBB),
    Reference("g-resnext-29-32x4d", "g-resnext-29-32x4d", "resnext"),
    Reference("resnext-29-32x4d", "resnext-29-32x4d", "resnext"),
    Reference("diracnet-34-2-s1", "diracnet-34-2", "diracnet", seed=1, paper_error=6.4, paper_source=_DIRAC),
    Reference("plain-34-2-s1", "plain-34-2", "diracnet", seed=1),
    Reference("diracnet-34-2-s2", "diracnet-34-2", "diracnet", seed=2, paper_error=6.4, paper_source=_DIRAC),
    Reference("plain-34-2-s2", "plain-34-2", "diracnet", seed=2),
    Reference("vgg16-dbb-s1", "vgg16-dbb", "dbb", seed=1, paper_error=5.38, paper_source=_DBB),
    Reference("vgg16-s1", "vgg16", "dbb", seed=1, paper_error=6.05, paper_source=_DBB),
    Reference("vgg16-dbb-s2", "vgg16-dbb", "dbb", seed=2, paper_error=5.38, paper_source=_DBB),
    Reference("vgg16-s2", "vgg16", "dbb", seed=2, paper_error=6.05, paper_source=_DBB),
)


def run_plan(plan: Sequence[Reference], data: CifarData, runs_dir: str | Path, budget: float,
             device: str | torch.device = "auto", progress: bool = False) -> bool:
    """Train the plan's unfinished runs in order, each resumed from its folder, until ``budget``
    seconds are spent; True when every run of the plan is finished.

    A run already begun is resumed only if its last logged epoch fits in the time left. A run not
    begun yet has no such measure, and ``fit`` trains at least one epoch: under a hard job limit, leave
    one epoch of the plan's largest model, with its start-up, between ``budget`` and that limit."""
    started, runs_dir = time.perf_counter(), Path(runs_dir)
    for ref in plan:
        folder = runs_dir / ref.name
        logged = RunLog.read(folder).rows if (folder / CONFIG).is_file() else []
        if len(logged) >= ref.planned_epochs:
            continue
        left = budget - (time.perf_counter() - started)
        if left <= 0 or (logged and logged[-1]["seconds"] + logged[-1]["eval_seconds"] > left):
            return False
        recipe = get_recipe(ref.recipe).replace(seed=ref.seed)
        torch.manual_seed(ref.seed)
        model = build_model(ref.model, num_classes=data.num_classes)
        print(f"{ref.name}: epoch {len(logged) + 1} of {ref.planned_epochs}, {left:.0f} s left", flush=True)
        try:
            run = fit(model, data, recipe, out=folder, resume=True, progress=progress, device=device,
                      time_limit=left)
        except (TrainingDiverged, CheckpointError, ValueError) as e:
            raise type(e)(f"reference run {ref.name} ({folder}): {e}") from e
        print(f"{ref.name}: {len(run.rows)}/{ref.planned_epochs} epochs, test acc {run.last['test_acc']:.4f}",
              flush=True)
        if len(run.rows) < ref.planned_epochs:
            return False
    return True


def export(plan: Sequence[Reference], runs_dir: str | Path, results_dir: str | Path) -> list[Path]:
    """Copy each started run's ``config.json`` and ``log.jsonl`` into ``results_dir/<name>/`` with a
    ``reference.json`` (plan entry, progress, the command that trains it). Checks every run first
    (``_check_exportable``) and copies nothing if one fails."""
    runs = {ref: RunLog.read(Path(runs_dir) / ref.name) for ref in plan if (Path(runs_dir) / ref.name / CONFIG).is_file()}
    for ref, run in runs.items():
        _check_exportable(ref, run, Path(results_dir) / ref.name)
    written = []
    for ref, run in runs.items():
        target = Path(results_dir) / ref.name
        target.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, LOG):
            shutil.copyfile(run.dir / name, target / name)
        note = {**asdict(ref), "planned_epochs": ref.planned_epochs, "epochs_done": len(run.rows),
                "command": f"python -m dirackit.reference run --only {ref.name} --budget SECONDS "
                           f"(repeated until it prints that the plan is finished)",
                "exported": date.today().isoformat()}
        (target / "reference.json").write_text(json.dumps(note, indent=1) + "\n")
        written.append(target)
    return written


def _check_exportable(ref: Reference, run: RunLog, shipped: Path) -> None:
    """A ValueError unless ``run`` is the plan entry's (model, recipe, seed), each file is at most
    ``MAX_FILE_BYTES``, and it is not shorter than the copy already shipped, which it would replace."""
    recipe = Recipe(**{**Recipe().asdict(), **run.header.get("recipe", {})})  # older runs: defaults
    if run.header.get("model", {}).get("name") != ref.model or recipe != get_recipe(ref.recipe).replace(seed=ref.seed):
        raise ValueError(f"{run.dir} is not the plan's {ref.name} ({ref.model}, recipe {ref.recipe}, seed "
                         f"{ref.seed}): train it with python -m dirackit.reference run, or move it away")
    for name in (CONFIG, LOG):
        size = (run.dir / name).stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{run.dir / name} is {size / 2**20:.1f} MB, over the {MAX_FILE_BYTES // 2**20} MB a "
                             f"shipped file may weigh: shrink what the model's log_state() logs per epoch")
    shipped_epochs = len(RunLog.read(shipped).rows) if (shipped / CONFIG).is_file() else 0
    if shipped_epochs > len(run.rows):
        raise ValueError(f"{shipped} holds {shipped_epochs} epochs, {run.dir} only {len(run.rows)}: finish the "
                         f"run before exporting it, or remove {shipped}")


def table(plan: Sequence[Reference], results_dir: str | Path):
    """One row per plan entry: epochs done, our final CIFAR-10 test error, the paper's, and the device
    and data it ran on (empty where the run is not in ``results_dir``)."""
    import pandas as pd
    rows = []
    for ref in plan:
        folder = Path(results_dir) / ref.name
        run = RunLog.read(folder) if (folder / CONFIG).is_file() else None
        row = {"run": ref.name, "model": ref.model, "recipe": ref.recipe, "seed": ref.seed,
               "epochs": f"{len(run.rows) if run else 0}/{ref.planned_epochs}",
               "error_%": round(100 * (1 - run.last["test_acc"]), 2) if run and run.rows else float("nan"),
               "paper_error_%": ref.paper_error, "paper": ref.paper_source}
        if run:
            data = run.header.get("data", {})
            sessions = [run.header, *run.header.get("resumed", [])]  # a run split across jobs may change device
            row.update(device=" + ".join(dict.fromkeys(str(h.get("device_name")) for h in sessions)),
                       torch=" + ".join(dict.fromkeys(str(h.get("torch")) for h in sessions)),
                       data=f"{Path(str(data.get('source'))).name} ({data.get('train_images')} train images)")
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()  # --budget counts loading the data too: it is the whole command's
    parser = argparse.ArgumentParser(prog="python -m dirackit.reference", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the plan's unfinished runs, in order, within --budget seconds")
    run.add_argument("--budget", type=float, required=True, metavar="SECONDS",
                     help="stop after the last epoch that fits (then run the same command again)")
    run.add_argument("--data", default=None, help="CIFAR-10 source (default: $DIRACKIT_DATA, else the download)")
    run.add_argument("--device", default="auto")
    run.add_argument("--progress", action="store_true")
    shipped = sub.add_parser("export", help="copy the runs' logs and provenance into --results")
    shown = sub.add_parser("table", help="our test errors beside the papers'")
    for p in (run, shipped, shown):
        p.add_argument("--only", nargs="+", metavar="NAME", help="these plan entries only")
    for p in (run, shipped):
        p.add_argument("--runs", default="runs/reference", help="folder of the run folders")
    for p in (shipped, shown):
        p.add_argument("--results", default="results")
    args = parser.parse_args(argv)

    unknown = sorted(set(args.only or ()) - {r.name for r in PLAN})
    if unknown:
        parser.error(f"not in the plan: {', '.join(unknown)} (the plan: {', '.join(r.name for r in PLAN)})")
    plan = tuple(r for r in PLAN if not args.only or r.name in args.only)
    try:
        if args.command == "table":
            print("CIFAR-10 test error (%): ours after the epochs shown, the papers' on the original CIFAR-10 "
                  "(ours: the data column)")
            print(table(plan, args.results).to_string(index=False, na_rep="-"))
            return 0
        if args.command == "export":
            for folder in export(plan, args.runs, args.results):
                print(f"wrote {folder}")
            return 0
        if args.budget <= 0:
            raise ValueError(f"--budget must be a positive number of seconds, got {args.budget}")
        data = load_cifar(args.data, dataset="cifar10")
        done = run_plan(plan, data, args.runs, args.budget - (time.perf_counter() - started), device=args.device,
                        progress=args.progress)
    except (ValueError, OSError, TrainingDiverged, CheckpointError) as e:
        print(f"{parser.prog}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print("the plan is finished" if done else "budget spent: run the same command again to continue")
    return 0 if done else PAUSED


if __name__ == "__main__":
    sys.exit(main())
