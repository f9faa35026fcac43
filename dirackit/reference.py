"""Reference runs on the whole of CIFAR-10, their logs shipped in ``results/<plan>/``.

Two plans, each a tuple of runs in priority order:

- ``gpu`` (``PLAN``): the papers' networks with each paper's recipe at full length (hours of a GPU);
- ``cpu`` (``CPU_PLAN``): one small pair per idea, trained on the full 50,000 training images and
  evaluated on the full 10,000 test images with its paper's recipe scaled to a short run, so the
  whole plan fits in a few hours of a 2-core CPU. Small networks and short runs: their accuracies
  are far from the papers', but each pair is compared on 10,000 images, where a difference of a
  point is beyond noise (``PAIRS`` and ``pair_table``). A second seed of a pair is trained only when
  the first seed's difference is within noise.

``python -m dirackit.reference run --plan cpu --budget SECONDS`` trains the first unfinished run
(then the next, while time is left), resuming across commands, so a plan of hours fits in job slots
of minutes. ``export`` copies each run's log, provenance and per-image test results (never its
checkpoint) into ``results/<plan>/``, where the notebooks read them; ``table`` sets the accuracies
beside the papers'. The learned-state summaries (DiracNet a/b per layer, DGConv gates, DBB branch
shares) are in every log row, written by the models' ``log_state()``.
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

from . import papers
from .checkpoint import CheckpointError
from .compare import compare_runs, contradiction_note
from .data import CifarData, load_cifar
from .recipes import Recipe, get_recipe
from .registry import build_model
from .runlog import CHECKPOINT, CONFIG, LOG, TEST_CORRECT, RunLog
from .claims import Finding, compared
from .stats import CONTRADICTED, NOISE, accuracy_interval
from .train import TrainingDiverged, fit

__all__ = ["Reference", "Pair", "Evidence", "PLAN", "CPU_PLAN", "PLANS", "PAIRS", "run_plan", "export", "table",
           "pair_table", "evidence", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 2 * 1024 * 1024  # what one shipped file may weigh: the repository stays small
PAUSED = 75  # exit status when the budget ran out before the plan was done (as python -m dirackit.train)


@dataclass(frozen=True)
class Reference:
    """One reference run: a model (with build options), its paper's recipe (at full length, or scaled
    to ``epochs``), a seed, and the paper's CIFAR-10 test error where the paper has one."""

    name: str
    model: str
    recipe: str
    seed: int = 0
    paper_error: float | None = None  # %, CIFAR-10; None where the paper has no such row
    paper_source: str = ""
    epochs: int | None = None          # None: the recipe's own length
    options: tuple[tuple[str, int], ...] = ()  # build_model options, e.g. (("base_channels", 16),)
    if_noise: tuple[str, str] | None = None   # train only if this pair's first seeds differ within noise

    @property
    def planned_epochs(self) -> int:
        return self.epochs or get_recipe(self.recipe).epochs

    def recipe_used(self) -> Recipe:
        """The paper's recipe with this run's seed, scaled to ``epochs`` (milestones included)."""
        recipe = get_recipe(self.recipe).replace(seed=self.seed)
        return recipe.replace(epochs=self.epochs) if self.epochs else recipe

    def build(self, num_classes: int = 10):
        return build_model(self.model, num_classes=num_classes, **dict(self.options))


@dataclass(frozen=True)
class Pair:
    """A claim of a paper tested by two runs of a plan: "``a`` is more accurate than ``b``"."""

    key: str               # what the notebooks ask for: "dirac", "wrn", "dbb", "odbb", "dgconv"
    claim: str
    a: str                 # plan entry names
    b: str
    paper: str             # the paper's own figure for the claim, with its source
    seeds: tuple[tuple[str, str], ...] = ()  # further (a, b) entries of the same pair, other seeds


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


_NARROW = (("base_channels", 16),)  # a quarter of the papers' widths: CPU-sized, same layout
_CPU = 6                             # epochs of every CPU-plan run
_WRN_PAIR = (f"{papers.WRN.figure('WRN-16-8')} vs {papers.WRN.figure('WRN-40-4')}; "
             f"{papers.WRN.figure('pre-act ResNet-1001')}")
_DIRAC_PAIR = f"{papers.DIRACNET.figure('DiracNet-34-1')} vs {papers.DIRACNET.figure('plain-34-1')}"
_DBB_PAIR = f"{papers.DBB.figure('VGG-16 + DBB')} vs {papers.DBB.figure('VGG-16')}"
_DG_PAIR = (f"no CIFAR figure from the authors that we could find; {papers.DGCONV.figure('G-ResNeXt-50', 'ImageNet')} vs "
            f"{papers.DGCONV.figure('ResNeXt-50 (32x4d)', 'ImageNet')}")

# Priority order: the claim a plain chain cannot show without Dirac weights first, then depth vs width,
# DBB, learned groups, the online DBB variant, then the second seeds a noisy first pair calls for.
CPU_PLAN: tuple[Reference, ...] = (
    Reference("diracnet-34-1", "diracnet-34-1", "diracnet", epochs=_CPU),
    Reference("plain-34-1", "plain-34-1", "diracnet", epochs=_CPU),
    Reference("wrn-10-2", "wrn-10-2", "wrn", epochs=_CPU),
    Reference("wrn-22-1", "wrn-22-1", "wrn", epochs=_CPU),
    Reference("vgg16-dbb-n16", "vgg16-dbb", "dbb", epochs=_CPU, options=_NARROW),
    Reference("vgg16-n16", "vgg16", "dbb", epochs=_CPU, options=_NARROW),
    Reference("g-resnext-11-8x4d-n16", "g-resnext-11-8x4d", "resnext", epochs=_CPU, options=_NARROW),
    Reference("resnext-11-8x4d-n16", "resnext-11-8x4d", "resnext", epochs=_CPU, options=_NARROW),
    Reference("vgg16-odbb-n16", "vgg16-odbb", "dbb", epochs=_CPU, options=_NARROW),
    Reference("diracnet-34-1-s1", "diracnet-34-1", "diracnet", seed=1, epochs=_CPU,
              if_noise=("diracnet-34-1", "plain-34-1")),
    Reference("plain-34-1-s1", "plain-34-1", "diracnet", seed=1, epochs=_CPU,
              if_noise=("diracnet-34-1", "plain-34-1")),
    Reference("wrn-10-2-s1", "wrn-10-2", "wrn", seed=1, epochs=_CPU, if_noise=("wrn-10-2", "wrn-22-1")),
    Reference("wrn-22-1-s1", "wrn-22-1", "wrn", seed=1, epochs=_CPU, if_noise=("wrn-10-2", "wrn-22-1")),
    Reference("vgg16-dbb-n16-s1", "vgg16-dbb", "dbb", seed=1, epochs=_CPU, options=_NARROW,
              if_noise=("vgg16-dbb-n16", "vgg16-n16")),
    Reference("vgg16-n16-s1", "vgg16", "dbb", seed=1, epochs=_CPU, options=_NARROW,
              if_noise=("vgg16-dbb-n16", "vgg16-n16")),
    Reference("g-resnext-11-8x4d-n16-s1", "g-resnext-11-8x4d", "resnext", seed=1, epochs=_CPU, options=_NARROW,
              if_noise=("g-resnext-11-8x4d-n16", "resnext-11-8x4d-n16")),
    Reference("resnext-11-8x4d-n16-s1", "resnext-11-8x4d", "resnext", seed=1, epochs=_CPU, options=_NARROW,
              if_noise=("g-resnext-11-8x4d-n16", "resnext-11-8x4d-n16")),
)

PAIRS: dict[str, tuple[Pair, ...]] = {
    "cpu": (
        Pair("dirac", "a DiracNet trains where its plain chain (no skips, no Dirac weights) falls behind",
             "diracnet-34-1", "plain-34-1", _DIRAC_PAIR, seeds=(("diracnet-34-1-s1", "plain-34-1-s1"),)),
        Pair("wrn", "wide and shallow beats thin and deep at about equal parameters (0.30M vs 0.27M)",
             "wrn-10-2", "wrn-22-1", _WRN_PAIR, seeds=(("wrn-10-2-s1", "wrn-22-1-s1"),)),
        Pair("dbb", "training with Diverse Branch Blocks beats the same plain VGG-16 (quarter width)",
             "vgg16-dbb-n16", "vgg16-n16", _DBB_PAIR, seeds=(("vgg16-dbb-n16-s1", "vgg16-n16-s1"),)),
        Pair("dgconv", "learned groups (G-ResNeXt) beat fixed groups (ResNeXt) at the same connection budget",
             "g-resnext-11-8x4d-n16", "resnext-11-8x4d-n16", _DG_PAIR,
             seeds=(("g-resnext-11-8x4d-n16-s1", "resnext-11-8x4d-n16-s1"),)),
        Pair("odbb", "training with online Diverse Branch Blocks beats the same plain VGG-16 (quarter width)",
             "vgg16-odbb-n16", "vgg16-n16", _DBB_PAIR),
    ),
    "gpu": (
        Pair("dirac", "a DiracNet trains where its plain chain falls behind", "diracnet-34-2", "plain-34-2",
             f"{papers.DIRACNET.figure('DiracNet-34-2')}; {papers.DIRACNET.figure('plain-34-1')} (no width-2 "
             f"plain chain in the paper)",
             seeds=(("diracnet-34-2-s1", "plain-34-2-s1"), ("diracnet-34-2-s2", "plain-34-2-s2"))),
        Pair("dbb", "training with Diverse Branch Blocks beats the same plain VGG-16", "vgg16-dbb", "vgg16", _DBB_PAIR,
             seeds=(("vgg16-dbb-s1", "vgg16-s1"), ("vgg16-dbb-s2", "vgg16-s2"))),
        Pair("dgconv", "learned groups (G-ResNeXt) beat fixed groups (ResNeXt) at the same connection budget",
             "g-resnext-29-32x4d", "resnext-29-32x4d", _DG_PAIR),
    ),
}
PLANS: dict[str, tuple[Reference, ...]] = {"gpu": PLAN, "cpu": CPU_PLAN}


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
        if len(logged) >= ref.planned_epochs or not _needed(ref, plan, runs_dir):
            continue
        left = budget - (time.perf_counter() - started)
        if left <= 0 or (logged and logged[-1]["seconds"] + logged[-1]["eval_seconds"] > left):
            return False
        recipe = ref.recipe_used()
        torch.manual_seed(ref.seed)
        model = ref.build(data.num_classes)
        print(f"{ref.name}: epoch {len(logged) + 1} of {ref.planned_epochs}, {left:.0f} s left", flush=True)
        try:
            run = fit(model, data, recipe, out=folder, resume=(folder / CHECKPOINT).is_file(), progress=progress,
                      device=device, time_limit=left)
        except (TrainingDiverged, CheckpointError, ValueError) as e:
            raise type(e)(f"reference run {ref.name} ({folder}): {e}") from e
        print(f"{ref.name}: {len(run.rows)}/{ref.planned_epochs} epochs, test acc {run.last['test_acc']:.4f}",
              flush=True)
        if len(run.rows) < ref.planned_epochs:
            return False
    return True


def _needed(ref: Reference, plan: Sequence[Reference], runs_dir: Path) -> bool:
    """False for a conditional second seed whose pair's first seeds differ beyond noise (or are not
    both finished yet: the plan lists the second seeds last, so they are by then)."""
    return ref.if_noise is None or _first_pair_verdict(ref, plan, runs_dir) == NOISE


def _first_pair_verdict(ref: Reference, plan: Sequence[Reference], runs_dir: Path) -> str | None:
    """The verdict of the pair a conditional second seed waits on; None until both of its runs finish."""
    planned = {r.name: r.planned_epochs for r in plan}
    folders = [runs_dir / name for name in ref.if_noise]
    finished = all((f / CONFIG).is_file() and len(RunLog.read(f).rows) >= planned.get(f.name, 0) for f in folders)
    return compare_runs(*folders).verdict if finished else None


def _shipped_header(header: dict) -> dict:
    """``header`` with the data source reduced to its file name (``cifar10`` and the like stay)."""
    data = header.get("data", {})
    source = data.get("source")
    if isinstance(source, str) and ("/" in source or "\\" in source):
        data = {**data, "source": Path(source).name}
    return {**header, "data": data}


def export(plan: Sequence[Reference], runs_dir: str | Path, results_dir: str | Path,
           plan_name: str = "gpu") -> list[Path]:
    """Copy each started run's ``config.json``, ``log.jsonl`` and ``test_correct.json`` into
    ``results_dir/<name>/`` with a ``reference.json`` (plan entry, progress, the command that trains
    it). Checks every run first (``_check_exportable``) and copies nothing if one fails. The data
    source is shipped as its file name: its sha256 identifies it, and the folder it was read from is
    a fact about the machine that trained it."""
    runs = {ref: RunLog.read(Path(runs_dir) / ref.name) for ref in plan if (Path(runs_dir) / ref.name / CONFIG).is_file()}
    for ref, run in runs.items():
        _check_exportable(ref, run, Path(results_dir) / ref.name)
    written = []
    for ref, run in runs.items():
        target = Path(results_dir) / ref.name
        target.mkdir(parents=True, exist_ok=True)
        (target / CONFIG).write_text(json.dumps(_shipped_header(run.header), indent=1) + "\n")
        for name in (LOG, TEST_CORRECT):
            if (run.dir / name).is_file():
                shutil.copyfile(run.dir / name, target / name)
        note = {**asdict(ref), "plan": plan_name, "planned_epochs": ref.planned_epochs, "epochs_done": len(run.rows),
                "train_hours": round(run.seconds / 3600, 3),
                "command": f"python -m dirackit.reference run --plan {plan_name} --only {ref.name} --budget SECONDS "
                           f"(repeated until it prints that the plan is finished)",
                "exported": date.today().isoformat()}
        (target / "reference.json").write_text(json.dumps(note, indent=1) + "\n")
        written.append(target)
    return written


def _check_exportable(ref: Reference, run: RunLog, shipped: Path) -> None:
    """A ValueError unless ``run`` is the plan entry's (model, recipe, seed), each file is at most
    ``MAX_FILE_BYTES``, and it is not shorter than the copy already shipped, which it would replace."""
    recipe = Recipe.from_saved(run.header.get("recipe", {}))  # older runs: defaults
    model = run.header.get("model", {})
    if (model.get("name") != ref.model or model.get("options", {}) != dict(ref.options)
            or recipe != ref.recipe_used()):
        raise ValueError(f"{run.dir} is not the plan's {ref.name} ({ref.model}, recipe {ref.recipe}, seed "
                         f"{ref.seed}): train it with python -m dirackit.reference run, or move it away")
    for name in (CONFIG, LOG, TEST_CORRECT):
        if not (run.dir / name).is_file():
            continue
        size = (run.dir / name).stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{run.dir / name} is {size / 2**20:.1f} MB, over the {MAX_FILE_BYTES // 2**20} MB a "
                             f"shipped file may weigh: shrink what the model's log_state() logs per epoch")
    shipped_epochs = len(RunLog.read(shipped).rows) if (shipped / CONFIG).is_file() else 0
    if shipped_epochs > len(run.rows):
        raise ValueError(f"{shipped} holds {shipped_epochs} epochs, {run.dir} only {len(run.rows)}: finish the "
                         f"run before exporting it, or remove {shipped}")


def table(plan: Sequence[Reference], results_dir: str | Path):
    """One row per plan entry: epochs done, our final CIFAR-10 test error with its 95% interval, the
    paper's, the hours it trained, and the device and data it ran on (empty where the run is not in
    ``results_dir``; a second seed whose pair already differs beyond noise reads "not needed")."""
    import pandas as pd
    rows = []
    for ref in plan:
        folder = Path(results_dir) / ref.name
        run = RunLog.read(folder) if (folder / CONFIG).is_file() else None
        options = ", ".join(f"{k}={v}" for k, v in ref.options)
        row = {"run": ref.name, "model": ref.model + (f" ({options})" if options else ""), "recipe": ref.recipe,
               "seed": ref.seed, "epochs": f"{len(run.rows) if run else 0}/{ref.planned_epochs}",
               "error_%": float("nan"), "95%_interval": "", "paper_error_%": ref.paper_error,
               "paper": ref.paper_source}
        if ref.if_noise and not run and _first_pair_verdict(ref, plan, Path(results_dir)) not in (None, NOISE):
            row["epochs"] = "not needed"  # its pair already differs beyond noise
        if run and run.rows:
            n = run.header.get("data", {}).get("test_images") or 0
            acc = run.last["test_acc"]
            low, high = accuracy_interval(round(acc * n), n) if n else (float("nan"), float("nan"))
            row.update({"error_%": round(100 * (1 - acc), 2),
                        "95%_interval": f"{100 * (1 - high):.2f}-{100 * (1 - low):.2f}",
                        "hours": round(run.seconds / 3600, 2)})
        if run:
            data = run.header.get("data", {})
            sessions = [run.header, *run.header.get("resumed", [])]  # a run split across jobs may change device
            row.update(device=" + ".join(dict.fromkeys(str(h.get("device_name")) for h in sessions)),
                       torch=" + ".join(dict.fromkeys(str(h.get("torch")) for h in sessions)),
                       data=f"{Path(str(data.get('source'))).name} ({data.get('train_images')} train images)")
        rows.append(row)
    return pd.DataFrame(rows)


def _finished_seeds(pair: Pair, results_dir: str | Path):
    """``(a, b, [folder_a, folder_b])`` for every seed of ``pair`` whose two runs both logged an epoch."""
    for a, b in ((pair.a, pair.b), *pair.seeds):
        folders = [Path(results_dir) / name for name in (a, b)]
        if all((f / CONFIG).is_file() and RunLog.read(f).rows for f in folders):
            yield a, b, folders


def pair_table(pairs: Sequence[Pair], results_dir: str | Path):
    """One row per finished pair of runs (every seed): the claim, both accuracies, the difference with
    its 95% interval, the verdict (``dirackit.stats``: paired on the same 10,000 test images) and the
    paper's figure. Pairs not in ``results_dir`` yet are left out."""
    import pandas as pd
    rows = []
    for pair in pairs:
        for a, b, folders in _finished_seeds(pair, results_dir):
            c = compare_runs(*folders, a=a, b=b)
            hours = [RunLog.read(f).seconds / 3600 for f in folders]
            rows.append({"claim": pair.claim, "a": a, "b": b, "acc_a_%": round(100 * c.acc_a, 2),
                         "acc_b_%": round(100 * c.acc_b, 2), "difference_points": round(100 * c.difference, 2),
                         "95%_interval": f"{100 * c.low:+.2f} to {100 * c.high:+.2f}",
                         "p_value": float(f"{c.p_value:.2g}"), "test_images": c.n, "paired": c.paired,
                         "verdict": c.verdict, "hours_a": round(hours[0], 2), "hours_b": round(hours[1], 2),
                         "paper": pair.paper})
    return pd.DataFrame(rows)


@dataclass
class Evidence:
    """A pair's full-data reference runs as a notebook shows them after its own quick run."""

    pair: Pair
    plan: str
    runs: list[Path]           # the run folders found, a then b for every seed
    findings: list[Finding]    # one per seed whose two runs are both there
    missing: str = ""          # why there is nothing to show, when there is not

    def show(self):
        """Print each finding (or why there is none) and return the runs' curves (None without runs)."""
        if not self.findings:
            print(f"No {self.plan} reference runs for this claim: {self.missing}")
            return None
        label = "full CIFAR-10, small networks, short runs" if self.plan == "cpu" else "full CIFAR-10"
        print(f"Reference runs ({self.plan} plan: {label}; trained by python -m dirackit.reference, not in "
              f"this notebook):\n")
        for finding in self.findings:
            print(finding, end="\n\n")
        from .viz import plot_curves
        return plot_curves([RunLog.read(folder) for folder in self.runs])


def evidence(key: str, results_dir: str | Path = "results/cpu", plan: str = "cpu") -> Evidence:
    """The reference runs of ``plan`` that test the claim ``key`` ("dirac", "wrn", "dbb", "odbb",
    "dgconv"), read from ``results_dir``: each seed's paired verdict on the full test set, beside the
    paper's figure; a contradicted one carries its likely cause, computed from the two logs. Missing
    runs are not an error: ``missing`` says what is absent and how to make it."""
    pair = next((p for p in PAIRS[plan] if p.key == key), None)
    if pair is None:
        raise ValueError(f"no {plan} reference pair {key!r}; known: {', '.join(p.key for p in PAIRS[plan])}")
    runs, findings = [], []
    for a, b, folders in _finished_seeds(pair, results_dir):
        runs += folders
        claim = f"{pair.claim} [{a} vs {b}]"
        comparison = compare_runs(*folders, a=a, b=b)
        note = contradiction_note(*folders) if comparison.verdict == CONTRADICTED else None  # why, from the logs
        findings.append(compared(claim, comparison, paper=pair.paper, note=note))
    missing = "" if findings else (
        f"{Path(results_dir) / pair.a} and {Path(results_dir) / pair.b} are not both there; train them with "
        f"python -m dirackit.reference run --plan {plan} --only {pair.a} {pair.b} --budget SECONDS, then export")
    return Evidence(pair, plan, runs, findings, missing)


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
    shown = sub.add_parser("table", help="our test errors beside the papers', then each pair's verdict")
    for p in (run, shipped, shown):
        p.add_argument("--plan", choices=sorted(PLANS), default="gpu",
                       help="gpu: the papers' networks at full length; cpu: small pairs, short runs, full data")
        p.add_argument("--only", nargs="+", metavar="NAME", help="these plan entries only")
    for p in (run, shipped):
        p.add_argument("--runs", default=None, help="folder of the run folders (default: runs/reference/PLAN)")
    for p in (shipped, shown):
        p.add_argument("--results", default=None, help="default: results/PLAN")
    args = parser.parse_args(argv)

    full_plan = PLANS[args.plan]
    unknown = sorted(set(args.only or ()) - {r.name for r in full_plan})
    if unknown:
        parser.error(f"not in the {args.plan} plan: {', '.join(unknown)} (the plan: "
                     f"{', '.join(r.name for r in full_plan)})")
    plan = tuple(r for r in full_plan if not args.only or r.name in args.only)
    runs_dir = getattr(args, "runs", None) or f"runs/reference/{args.plan}"
    results_dir = getattr(args, "results", None) or f"results/{args.plan}"
    try:
        if args.command == "table":
            small = " (small networks, short runs: compare the pairs, not the papers' absolute errors)"
            print(f"CIFAR-10 test error (%), {args.plan} plan{small if args.plan == 'cpu' else ''}: ours after the "
                  f"epochs shown, the papers' on the original CIFAR-10 (ours: the data column)")
            print(table(plan, results_dir).to_string(index=False, na_rep="-"))
            pairs = pair_table(PAIRS[args.plan], results_dir)
            if len(pairs):
                print("\nEach claim, tested on the same test images (95% interval of the difference, McNemar):")
                print(pairs.drop(columns=["claim", "paper"]).to_string(index=False))
            print("\nThe papers' figures for each claim (their own networks at full length):")
            for pair in PAIRS[args.plan]:
                print(f"  {pair.key}: {pair.claim}. Paper: {pair.paper}")
            return 0
        if args.command == "export":
            for folder in export(plan, runs_dir, results_dir, plan_name=args.plan):
                print(f"wrote {folder}")
            return 0
        if args.budget <= 0:
            raise ValueError(f"--budget must be a positive number of seconds, got {args.budget}")
        data = load_cifar(args.data, dataset="cifar10")
        done = run_plan(plan, data, runs_dir, args.budget - (time.perf_counter() - started), device=args.device,
                        progress=args.progress)
    except (ValueError, OSError, TrainingDiverged, CheckpointError) as e:
        print(f"{parser.prog}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print("the plan is finished" if done else "budget spent: run the same command again to continue")
    return 0 if done else PAUSED


if __name__ == "__main__":
    sys.exit(main())
