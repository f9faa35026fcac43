"""``python -m dirackit.train``: train a registered model on CIFAR from the command line.

``torchrun --nproc_per_node=N -m dirackit.train ...`` trains on N processes (one per GPU), with
``--batch-size`` the global batch; rank 0 writes the run folder and prints.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from ..checkpoint import CheckpointError
from ..data import load_cifar
from ..recipes import PRESETS, get_recipe
from ..registry import build_model, model_card
from . import TrainingDiverged, fit, resolve_device
from .distributed import init_from_env, main_first, shutdown


PAUSED = 75  # exit status of a run stopped by --time-limit (sysexits' EX_TEMPFAIL: "run again")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line instead of argparse's full usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m dirackit.train``: bad input exits 2 with one line on stderr, never a traceback."""
    started = time.perf_counter()
    parser = _Parser(prog="python -m dirackit.train", description="Train a dirackit model on CIFAR.")
    parser.add_argument("--model", required=True, help="registry name, e.g. wrn-28-10, wrn-16-4")
    parser.add_argument("--data", default=None, help="archive, folder, torchvision root, cifar10 or cifar100 "
                                                     "(default: $DIRACKIT_DATA, else CIFAR-10 download)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", required=True, help="run folder (log, provenance, checkpoint)")
    parser.add_argument("--recipe", choices=sorted(PRESETS), default=None, help="default: the model's paper recipe")
    parser.add_argument("--batch-size", type=int, default=None, help="the global batch, split across processes")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--schedule", choices=("step", "cosine", "onecycle"), default=None,
                        help="lr schedule (default: the recipe's; a step schedule's milestones scale with --epochs)")
    parser.add_argument("--dropout", type=float, default=None, help="WRN dropout between the block's convs")
    parser.add_argument("--subset", type=int, default=None, metavar="N_PER_CLASS",
                        help="train on N images per class (and N/5 test images per class)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sync-bn", action="store_true", help="several GPUs (torchrun): BatchNorm statistics "
                                                               "over the global batch, not each GPU's part")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help=f"stop after the last epoch that fits in SECONDS, exit {PAUSED}; the same command "
                             f"with --resume continues (for job slots shorter than the run)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    try:
        options = {} if args.dropout is None else {"dropout": args.dropout}
        recipe = get_recipe(args.recipe or model_card(args.model).recipe)
        changes = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                   "schedule": args.schedule}
        recipe = recipe.replace(**{k: v for k, v in changes.items() if v is not None})
        if args.subset is not None and args.subset < 1:
            raise ValueError(f"--subset must be >= 1 images per class, got {args.subset}")
        world, device = init_from_env(resolve_device(args.device))
        with main_first():  # under torchrun: rank 0 fills the data cache (or downloads), then the others read
            data = load_cifar(args.data)
        if args.subset:
            data = data.subset(args.subset, max(1, args.subset // 5))
        torch.manual_seed(args.seed)
        _check_fits_in_memory(args.model, data.num_classes, options, device)
        model = build_model(args.model, num_classes=data.num_classes, **options)
        run = fit(model, data, recipe, out=args.out, resume=args.resume, progress=not args.no_progress,
                  device=device, sync_bn=args.sync_bn,
                  time_limit=_remaining(args.time_limit, started))
    except (ValueError, TypeError, OSError, TrainingDiverged, CheckpointError) as e:  # DataError: ValueError
        return fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except (MemoryError, torch.cuda.OutOfMemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        return fail(f"out of memory ({(str(e).splitlines() or [type(e).__name__])[0][:200]}): lower --batch-size "
                    f"or choose a smaller model")
    except KeyboardInterrupt:
        return fail(f"interrupted; continue with the same command plus --resume (the last epoch's "
                    f"checkpoint is in {args.out})")
    paused = len(run.rows) < recipe.epochs
    if world.is_main and paused:
        print(f"paused at the time limit after {len(run.rows)}/{recipe.epochs} epochs, test acc "
              f"{run.last.get('test_acc', float('nan')):.4f}; continue with the same command plus --resume")
    elif world.is_main:
        last = run.last
        print(f"done: {len(run.rows)} epochs, test acc {last.get('test_acc', float('nan')):.4f}, "
              f"run folder {args.out}")
    shutdown()
    return PAUSED if paused else 0


def _check_fits_in_memory(name: str, num_classes: int, options: dict, device: torch.device) -> None:
    """Refuse a model whose weights alone (three copies to train on the CPU: weights, gradients,
    momentum) exceed the memory available, before building it: on Linux the build would be killed
    by the kernel's out-of-memory killer, without a word."""
    with torch.device("meta"):  # parameters without storage: counts in milliseconds
        params = sum(p.numel() for p in build_model(name, num_classes=num_classes, **options).parameters())
    copies = 3 if device.type == "cpu" else 1  # on a GPU the model is built on the CPU, then moved
    need, available = 4 * params * copies, _memory_available()
    if available is not None and need > available:
        raise ValueError(f"{name} has {params:,} parameters, {need / 1e9:.1f} GB as float32 "
                         f"{'weights, gradients and momentum' if copies == 3 else 'weights'}, but this machine "
                         f"has {available / 1e9:.1f} GB of memory available: choose a smaller model")


def _memory_available() -> int | None:
    """Bytes of memory available to a new allocation: Linux's MemAvailable, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _remaining(time_limit: float | None, started: float) -> float | None:
    """The part of ``--time-limit`` left for training once the data is loaded (fit trains one epoch at least)."""
    if time_limit is None or not time_limit > 0:
        return time_limit  # None, or a bad value (NaN too) that fit refuses with its own message
    return max(time_limit - (time.perf_counter() - started), 1e-3)


if __name__ == "__main__":
    sys.exit(main())
