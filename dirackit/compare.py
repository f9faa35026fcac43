"""All four ideas side by side: one row per finished run, with what it cost to train and to deploy.

``summarize_runs`` reads run folders (the course notebooks' and the reference logs in ``results/``);
``deploy_speed`` rebuilds each run's model from its checkpoint, counts what it costs deployed (folded
parameters and multiply-adds) and times it before and after ``dirackit.fold``, every model in the
same interleaved rounds. ``pair_findings`` tests each idea against its own control among the runs,
and ``most_accurate`` says which runs a test set of this size cannot tell apart from the best one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from . import papers
from .claims import Finding, compared
from .folding import check_fold, fold
from .metrics import count_macs, count_params, fold_speed
from .recipes import get_recipe
from .registry import model_card
from .restore import load_run
from .runlog import CHECKPOINT, RunLog, load_runs
from .stats import CONTRADICTED, NOISE, Comparison, accuracy_interval, compare_paired, compare_unpaired

__all__ = ["FAMILIES", "family_of", "summarize_runs", "deploy_cost", "deploy_speed", "compare_runs", "Control",
           "CONTROLS", "pair_findings", "contradiction_note", "Leader", "most_accurate"]

# Registry-name prefix -> the idea it belongs to; the first match wins, so longer prefixes first.
FAMILIES = (("g-resnext", "G-ResNeXt"), ("resnext", "ResNeXt"), ("diracnet", "DiracNet"),
            ("plain", "plain (no skips)"), ("wrn", "WRN"), ("preresnet", "pre-act ResNet"))


def family_of(name: str) -> str:
    """The idea a registry model belongs to, e.g. ``vgg16-dbb`` -> ``DBB``, ``wrn-16-4`` -> ``WRN``."""
    if name.endswith("-odbb"):
        return "online DBB"
    if name.endswith("-dbb"):
        return "DBB"
    if name.startswith(("vgg", "resnet")):
        return "plain conv-BN"
    return next((label for prefix, label in FAMILIES if name.startswith(prefix + "-")), "other")


def summarize_runs(paths: Iterable[str | os.PathLike] | str | os.PathLike):
    """One row per run folder under ``paths``: run, model, family, dataset ("cifar10", "cifar100",
    or "N classes"), params, epochs, final test accuracy with its 95% interval (``acc_low``,
    ``acc_high``, over ``test_images``) and training images/s (mean over the epochs after the first,
    which holds the warm-up)."""
    import pandas as pd
    frame = load_runs(paths)
    rows = []
    for run, log in frame.groupby("run", sort=False):
        later = log[log["epoch"] > 1] if len(log) > 1 else log
        classes = log["num_classes"].iloc[0]
        acc = float(log["test_acc"].iloc[-1])
        n = int(RunLog.read(run).header.get("data", {}).get("test_images") or 0)
        low, high = accuracy_interval(round(acc * n), n) if n else (float("nan"), float("nan"))
        rows.append({"run": run, "model": log["model"].iloc[0], "family": family_of(str(log["model"].iloc[0])),
                     "dataset": f"cifar{classes}" if classes in (10, 100) else f"{classes} classes",
                     "params": int(log["num_params"].iloc[0]), "epochs": int(log["epoch"].max()),
                     "test_acc": acc, "acc_low": low, "acc_high": high, "test_images": n,
                     "train_img_s": float(later["images_per_s"].mean())})
    return pd.DataFrame(rows)


def deploy_cost(model: torch.nn.Module) -> dict[str, int]:
    """What ``model`` costs per image as trained and as deployed: multiply-adds of the training form
    (``macs``: every branch, every dense masked conv) and parameters and multiply-adds after
    ``dirackit.fold`` (``deployed_params``, ``deployed_macs``: what inference runs)."""
    folded = fold(model)
    return {"macs": count_macs(model), "deployed_params": count_params(folded), "deployed_macs": count_macs(folded)}


def deploy_speed(runs: Iterable[str], batch_size: int = 256, steps: int = 5, repeats: int = 3,
                 device: str | torch.device = "cpu", probe_size: int = 8) -> list[dict]:
    """For each run folder: inference img/s of its trained model unfolded and folded, with
    ``fold_speedup`` (all timed in the same rounds by ``metrics.fold_speed``), the fold's error on
    random inputs and the model's ``deploy_cost`` (MACs as trained, parameters and MACs deployed). A
    run shipped without its checkpoint (``results/``) is timed untrained but with its logged structure
    (a G-ResNeXt's learned groups), which costs the same as the trained model; ``trained`` says which."""
    models, rows = {}, []
    torch.manual_seed(0)
    probe = torch.randn(probe_size, 3, 32, 32)
    for run in runs:
        trained = Path(run, CHECKPOINT).is_file()
        model, _, _ = load_run(run, weights=trained)
        models[run] = model
        rows.append({"run": run, "trained": trained, "fold_error": check_fold(model, probe), **deploy_cost(model)})
    speed = fold_speed(models, batch_size, steps, repeats, device)
    return [{**row, **speed[row["run"]]} for row in rows]


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, a: str | None = None,
                 b: str | None = None) -> Comparison:
    """Test the claim "run ``a`` is more accurate than run ``b``" on their last evaluations: paired
    (McNemar) when both folders record per-image results on the same test images, else unpaired.
    ``a``/``b`` name them in the printed line (default: the model names)."""
    logs = [RunLog.read(run_a), RunLog.read(run_b)]
    names = [name or log.header.get("model", {}).get("name", str(log.dir)) for name, log in zip((a, b), logs)]
    for log in logs:
        if not log.rows:
            raise ValueError(f"{log.dir} has no finished epoch to compare")
    per_image = [log.test_correct() for log in logs]
    if all(per_image) and per_image[0][1] == per_image[1][1]:
        return compare_paired(per_image[0][0], per_image[1][0], *names)
    sizes = [log.header.get("data", {}).get("test_images") for log in logs]
    return compare_unpaired(logs[0].last["test_acc"], sizes[0], logs[1].last["test_acc"], sizes[1], *names)


@dataclass(frozen=True)
class Control:
    """One idea against its control: a run whose model matches ``pattern`` (in full) against the first
    run whose model matches ``control``, a pattern in which ``\\1`` stands for what ``pattern``'s first
    group matched (``diracnet-(.+)`` against ``plain-\\1``: the same chain without Dirac weights)."""

    key: str
    pattern: str
    control: str
    claim: str
    paper: str  # the paper's own figures for the claim, with their source


CONTROLS: tuple[Control, ...] = (
    Control("dirac", r"diracnet-(\d+-\d+)", r"plain-\1",
            "a DiracNet trains where the same chain with ordinary convs falls behind",
            papers.DIRACNET.versus("DiracNet-34-1", "plain-34-1") + "; plain-100-1 is below 88% (same figure)"),
    Control("wrn", r"wrn-\d+-\d+", r"preresnet-\d+", "a wide, shallow ResNet beats a thin, deep one",
            papers.WRN.versus("WRN-40-4", "pre-act ResNet-1001") + "; 8.9 M vs 10.2 M parameters"),
    Control("dgconv", r"g-resnext-(.+)", r"resnext-\1",
            "learned channel groups (G-ResNeXt) beat fixed groups (ResNeXt) at the same connection budget",
            papers.DGCONV.versus("G-ResNeXt-50", "ResNeXt-50 (32x4d)")),
    Control("dbb", r"(.+)-dbb", r"\1", "training with Diverse Branch Blocks beats the same plain network",
            papers.DBB.versus("VGG-16 + DBB", "VGG-16")),
    Control("odbb", r"(.+)-odbb", r"\1", "training with online Diverse Branch Blocks beats the same plain network",
            papers.DBB.versus("VGG-16 + DBB", "VGG-16") + " (offline DBB; the online variant is OREPA's)"),
)


def pair_findings(table, controls: Iterable[Control] = CONTROLS) -> list[Finding]:
    """Each idea among ``table``'s runs (columns ``model`` and ``run``) tested against its control run
    in the same table (``compare_runs``: paired on the same test images when both runs kept per-image
    results): one ``claims.Finding`` per pair found, in the order of ``controls``. A contradicted claim
    carries its likely cause, computed from the two runs (``contradiction_note``)."""
    models = list(zip(table["model"], table["run"]))
    findings = []
    for control in controls:
        for name, run in models:
            match = re.fullmatch(control.pattern, name)
            if match is None:
                continue
            wanted = re.sub(r"\\(\d)", lambda g: re.escape(match[int(g[1])]), control.control)
            other = next(((m, r) for m, r in models if r != run and re.fullmatch(wanted, m)), None)
            if other is not None:
                comparison = compare_runs(run, other[1], a=name, b=other[0])
                note = contradiction_note(run, other[1]) if comparison.verdict == CONTRADICTED else None
                findings.append(compared(f"{control.claim} [{name} vs {other[0]}]", comparison, paper=control.paper,
                                         note=note))
    return findings


def contradiction_note(run_a: str | os.PathLike, run_b: str | os.PathLike) -> str:
    """Why a short run can contradict a paper, from the runs' own logs: how long ``run_a`` trained
    against its paper's recipe, and whether it is behind already on its training images (a longer run
    may close the gap: the logs cannot say) or only on the test images (it generalises worse here)."""
    logs = [RunLog.read(run_a), RunLog.read(run_b)]
    (a, b), (fit_a, fit_b) = ([log.header["model"]["name"] for log in logs], [log.last["train_acc"] for log in logs])
    images = logs[0].header.get("data", {}).get("train_images", 0)
    paper_epochs = get_recipe(model_card(a).recipe).epochs
    epochs = len(logs[0].rows)
    length = (f"after {epochs} epoch{'s' * (epochs != 1)} on {images:,} training images (its paper's recipe runs "
              f"{paper_epochs} epochs on the full training set)")
    if fit_a < fit_b:
        return (f"{length}, {a} also fits its training images less well than {b} (train accuracy {fit_a:.1%} vs "
                f"{fit_b:.1%}): it is behind in training, not only in generalisation, and a run of its paper's "
                f"length may close the gap")
    return (f"{length}, {a} fits its training images as well as {b} or better (train accuracy {fit_a:.1%} vs "
            f"{fit_b:.1%}) yet tests worse: in this run it generalises worse")


@dataclass(frozen=True)
class Leader:
    """The most accurate run of a table and how it compares with every other run."""

    model: str
    acc: float
    low: float                          # 95% interval of its accuracy
    high: float
    others: tuple[Comparison, ...]      # the leader against each other run

    @property
    def ties(self) -> list[Comparison]:
        """The runs a test set of this size cannot tell apart from the leader."""
        return [c for c in self.others if c.verdict == NOISE]

    def __str__(self) -> str:
        line = f"Most accurate here: {self.model} at {self.acc:.1%} (95% CI {self.low:.1%} to {self.high:.1%})"
        if not self.others:
            return line + ", the only run."
        if not self.ties:
            return line + "; every other run is behind it beyond noise."
        tied = "; ".join(f"{c.b} {c.acc_b:.1%} ({100 * c.difference:+.1f} points, 95% CI {100 * c.low:+.1f} to "
                         f"{100 * c.high:+.1f})" for c in self.ties)
        return (f"{line}, but within noise of {len(self.ties)} of the {len(self.others)} other runs: {tied}. "
                f"At this test size it is not the best of those, only the highest.")


def most_accurate(table) -> Leader:
    """The run of ``table`` (columns ``model``, ``run``, ``test_acc``) with the highest final test
    accuracy, compared with every other run (``compare_runs``), so a notebook can say which runs are
    within noise of it instead of crowning a winner by a fraction of a point."""
    if len(table) == 0:
        raise ValueError("no runs to rank: the table is empty (train or point to some runs first)")
    best = table.loc[table["test_acc"].idxmax()]
    log = RunLog.read(best["run"])
    n = int(log.header.get("data", {}).get("test_images") or 0)
    low, high = accuracy_interval(round(best["test_acc"] * n), n) if n else (float("nan"), float("nan"))
    others = tuple(compare_runs(best["run"], run, a=best["model"], b=model)
                   for model, run in zip(table["model"], table["run"]) if run != best["run"])
    return Leader(str(best["model"]), float(best["test_acc"]), low, high, others)
