"""The command line of ``python -m dirackit.train``, both ways: its parser, and ``repeat_command``,
which reads a run folder's ``config.json`` and gives the command that trains the same run again.

A notebook's run is then one line away from a terminal or a job script. Where a setting of the run
has no flag (a recipe field other than those below, a model option other than dropout, test images
other than N/5 per class), ``repeat_command`` says which, instead of printing a command that would
train something else.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..recipes import PRESETS, Recipe, get_recipe, saved_fields
from ..registry import model_card
from ..runlog import CONFIG

__all__ = ["build_parser", "recipe_from_args", "RepeatCommand", "repeat_command"]

PAUSED = 75  # exit status of a run stopped by --time-limit (sysexits' EX_TEMPFAIL: "run again")
# Recipe fields the command line sets, and their flags; every other field comes from the --recipe preset.
RECIPE_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "schedule": "--schedule",
                "seed": "--seed", "precision": "--precision"}
CIFAR_SPLITS = (50_000, 10_000)  # training and test images of CIFAR-10 and of CIFAR-100: no --subset


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line instead of argparse's full usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _prog() -> str:
    """How the command was called: ``python -m dirackit.train`` (also under torchrun) or the script's name."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m dirackit.train" if name in ("", "__main__.py", "-c") else name


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dirackit.train`` (bad input exits 2 with one line; ``--model`` and
    ``--out`` are required unless ``--list-models`` is given, which the caller checks)."""
    parser = _Parser(prog=_prog(), description="Train a dirackit model on CIFAR.", formatter_class=_Formatter)
    parser.add_argument("--model", help="registry name, e.g. wrn-28-10, wrn-16-4 (see --list-models)")
    parser.add_argument("--data", default=None, help="archive, folder, torchvision root, cifar10 or cifar100 "
                                                     "(default: $DIRACKIT_DATA, else CIFAR-10 download)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", help="run folder (log, provenance, checkpoint)")
    parser.add_argument("--recipe", choices=sorted(PRESETS), default=None, help="default: the model's paper recipe")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the global batch, split across processes (default: the recipe's, lowered to fit "
                             "a small --subset)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--schedule", choices=("step", "cosine", "onecycle"), default=None,
                        help="lr schedule (default: the recipe's; a step schedule's milestones scale with --epochs)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default=None,
                        help="default: the recipe's (auto: bf16 on CUDA of compute capability >= 8.0, fp16 with a "
                             "gradient scaler below, fp32 on CPU and MPS)")
    parser.add_argument("--dropout", type=float, default=None, help="WRN dropout between the block's convs")
    parser.add_argument("--subset", type=int, default=None, metavar="N_PER_CLASS",
                        help="train on N images per class (and N/5 test images per class)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    parser.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling and augmentation")
    parser.add_argument("--sync-bn", action="store_true", help="several GPUs (torchrun): BatchNorm statistics "
                                                               "over the global batch, not each GPU's part")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help=f"stop after the last epoch that fits in SECONDS, exit {PAUSED}; the same command "
                             f"with --resume continues (for job slots shorter than the run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines stay)")
    parser.add_argument("--tensorboard", metavar="DIR", default=None,
                        help="also log every epoch to TensorBoard event files in DIR (needs the tensorboard package)")
    parser.add_argument("--csv", metavar="FILE", default=None, help="also keep the epochs as a CSV table in FILE")
    parser.add_argument("--list-models", nargs="?", const="*", default=None, metavar="PATTERN",
                        help="list the example model names matching the shell-style PATTERN (all without one), "
                             "then exit")
    return parser


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe a parsed command trains with: the preset (default: the model's paper recipe) with
    the flags given applied, its step milestones scaled to ``--epochs``."""
    recipe = get_recipe(args.recipe or model_card(args.model).recipe)
    changes = {field: getattr(args, field) for field in RECIPE_FLAGS}
    return recipe.replace(**{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class RepeatCommand:
    """The command that trains a run again (``argv``, after ``python -m dirackit.train``), or, when a
    setting of the run has no flag, the reasons it cannot be given (``problems``)."""

    run_dir: str
    argv: tuple[str, ...]
    problems: tuple[str, ...] = ()
    processes: int = 1

    def __str__(self) -> str:
        if self.problems:
            return (f"{self.run_dir} cannot be repeated with python -m dirackit.train: "
                    + "; ".join(self.problems) + ". Repeat it in Python with the same recipe (config.json).")
        launcher = ("python -m dirackit.train" if self.processes == 1
                    else f"torchrun --standalone --nproc_per_node={self.processes} -m dirackit.train")
        return f"{launcher} {shlex.join(self.argv)}"


def repeat_command(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                   data: str | None = None) -> RepeatCommand:
    """The command that trains the run in ``run_dir`` again into ``out`` (default: ``run_dir`` plus
    ``-again``, since a folder holding a run is never overwritten), reading ``data`` (default: the
    source the run recorded). Rebuilt from ``config.json`` alone: the model and its dropout, the
    recipe as a preset plus flags, the subset, the device, the seed."""
    header = json.loads(Path(run_dir, CONFIG).read_text())
    spec, problems = header.get("model", {}), []
    name = spec.get("name", "?")
    if "options" not in spec:
        return RepeatCommand(str(run_dir), (), (f"its model {name} was not built by name (dk.build_model)",))
    recorded = _recipe(header["recipe"])
    preset = _preset_for(name, recorded)
    argv = ["--model", name, "--data", data or header["data"]["source"],
            "--out", str(out or f"{run_dir}-again")]
    if preset is None:
        own = get_recipe(model_card(name).recipe).replace(**_flagged(recorded))
        differing = [f"{f.name}={getattr(recorded, f.name)!r}" for f in dataclasses.fields(Recipe)
                     if getattr(recorded, f.name) != getattr(own, f.name)]
        problems.append(f"its recipe differs from every preset in {', '.join(differing)}, which no flag sets")
    elif preset != model_card(name).recipe:
        argv += ["--recipe", preset]
    base = PRESETS[preset or model_card(name).recipe]
    for field, flag in RECIPE_FLAGS.items():
        if field != "precision" or recorded.precision != base.precision:  # --precision only where it differs
            argv += [flag, str(getattr(recorded, field))]
    options = dict(spec["options"])
    if "dropout" in options:
        argv += ["--dropout", str(options.pop("dropout"))]
    if options:
        problems.append(f"the model option(s) {', '.join(map(str, options))} have no flag (only --dropout)")
    subset, problem = _subset(header["data"])
    problems += [problem] if problem else []
    argv += ["--subset", str(subset)] if subset else []
    argv += ["--device", str(header.get("device", "auto")).split(":")[0]]
    argv += ["--sync-bn"] if header.get("sync_bn") else []
    return RepeatCommand(str(run_dir), tuple(argv) if not problems else (), tuple(problems),
                         int(header.get("world_size", 1)))


def _recipe(saved: dict) -> Recipe:
    """A recipe from config.json as ``Recipe`` names its fields today (``saved_fields``), lists back to tuples."""
    return Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved_fields(saved).items()})


def _flagged(recipe: Recipe) -> dict:
    return {field: getattr(recipe, field) for field in RECIPE_FLAGS}


def _preset_for(model: str, recipe: Recipe) -> str | None:
    """The preset (the model's own first) that the command-line flags turn into ``recipe``, if any."""
    own = model_card(model).recipe
    for name in [own] + sorted(set(PRESETS) - {own}):
        if PRESETS[name].replace(**_flagged(recipe)) == recipe:
            return name
    return None


def _subset(data: dict) -> tuple[int | None, str | None]:
    """``--subset`` for the images a run trained and tested on: None for a whole CIFAR, or the reason
    no flag gives them (``--subset N`` takes N training and N/5 test images per class)."""
    train, test, classes = data["train_images"], data["test_images"], len(data["classes"])
    if (train, test) == CIFAR_SPLITS:
        return None, None
    per_class, uneven = divmod(train, classes)
    if uneven or test != classes * max(1, per_class // 5):
        return None, (f"it trained on {train:,} and tested on {test:,} images of {classes} classes, and --subset N "
                      f"takes N training and N/5 test images per class (no flag sets the test images apart)")
    return per_class, None
