"""``python -m dirackit.train`` (or ``dirackit-train``): train a registered model on CIFAR from the
command line.

It says what it is about to do in a few lines (model, device, data, recipe, where it writes; fit adds
the precision), then one line per epoch. ``torchrun --nproc_per_node=N -m dirackit.train ...`` trains on N
processes (one per GPU), with ``--batch-size`` the global batch; rank 0 writes the run folder and prints.
"""
from __future__ import annotations

import os
import sys
import time

import torch

from ..checkpoint import CheckpointError
from ..data import CifarData, load_cifar
from ..loggers import CsvLogger, TensorBoardLogger
from ..metrics import count_params
from ..recipes import Recipe
from ..registry import build_model, list_models, model_card
from . import TrainingDiverged, fit, resolve_device
from .command import PAUSED, build_parser, recipe_from_args
from .distributed import init_from_env, main_first, shutdown


def main(argv: list[str] | None = None) -> int:
    """``python -m dirackit.train``: bad input exits 2 with one line on stderr, never a traceback."""
    started = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    if args.list_models is not None:
        return _list_models(args.list_models, parser.prog)
    missing = [flag for flag, value in (("--model", args.model), ("--out", args.out)) if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    try:
        options = {} if args.dropout is None else {"dropout": args.dropout}
        recipe = recipe_from_args(args)
        if args.subset is not None and args.subset < 1:
            raise ValueError(f"--subset must be >= 1 images per class, got {args.subset}")
        world, device = init_from_env(resolve_device(args.device))
        loggers = ([TensorBoardLogger(args.tensorboard)] if args.tensorboard else []) + \
            ([CsvLogger(args.csv)] if args.csv else [])
        with main_first():  # under torchrun: rank 0 fills the data cache (or downloads), then the others read
            data = load_cifar(args.data)
        if args.subset:
            data = data.subset(args.subset, max(1, args.subset // 5))
        note = ""
        if args.batch_size is None:
            recipe, note = fit_batch(recipe, len(data.train_labels), world.world_size)
        torch.manual_seed(args.seed)
        _check_fits_in_memory(args.model, data.num_classes, options, device)
        model = build_model(args.model, num_classes=data.num_classes, **options)
        if world.is_main:
            print(describe(args.model, model, device, data, recipe, args.recipe or model_card(args.model).recipe,
                           args.out, note), flush=True)
        run = fit(model, data, recipe, out=args.out, resume=args.resume, progress=not args.no_progress,
                  verbose=True, device=device, sync_bn=args.sync_bn, callbacks=loggers,
                  time_limit=_remaining(args.time_limit, started))
        for logger in loggers:
            getattr(logger, "close", lambda: None)()
    except ImportError as e:  # --tensorboard without the tensorboard package
        return fail(str(e))
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


def fit_batch(recipe: Recipe, train_images: int, processes: int = 1) -> tuple[Recipe, str]:
    """The recipe's batch, or a smaller one when the training set is too small for it (a ``--subset``):
    the largest power of two that gives two steps an epoch and splits evenly across the processes.
    Returns the recipe and a note saying what was chosen ("" when nothing changed)."""
    if recipe.batch_size * 2 <= train_images or recipe.batch_size <= processes:
        return recipe, ""
    batch = 1 << max(0, (train_images // 2).bit_length() - 1)
    batch = max(processes, batch - batch % processes)
    if batch >= recipe.batch_size:
        return recipe, ""
    return recipe.replace(batch_size=batch), (f"batch {batch} instead of the recipe's {recipe.batch_size}, "
                                              f"which is more than half of the {train_images} training images "
                                              f"(set --batch-size to choose)")


def describe(name: str, model: torch.nn.Module, device: torch.device, data: CifarData, recipe: Recipe,
             recipe_name: str, out: str, note: str = "") -> str:
    """What the run is about to do, one line per part."""
    cuda = device.type == "cuda"
    where = f"{device.type} ({torch.cuda.get_device_name(device)})" if cuda else device.type
    layout = ", channels_last" if cuda and recipe.channels_last else ""
    if recipe.schedule == "step":
        drops = ", ".join(map(str, recipe.milestones)) or "none"
        schedule = f"step: lr {recipe.lr:g}, x{recipe.gamma:g} after epochs {drops}"
    elif recipe.schedule == "cosine":
        schedule = f"cosine from lr {recipe.lr:g} to 0"
    else:
        schedule = f"onecycle: up to lr {recipe.lr:g} over the first {recipe.warmup:.0%} of steps, then down to 0"
    lines = [f"model   {name}: {count_params(model):,} parameters",
             f"device  {where}{layout}",
             f"data    {len(data.train_labels):,} train / {len(data.test_labels):,} test images, "
             f"{data.num_classes} classes ({data.source})",
             f"recipe  {recipe_name}: {recipe.epochs} epochs, batch {recipe.batch_size}, {schedule}",
             f"out     {out}"]
    if note:
        lines.insert(4, f"note    {note}")
    return "\n".join(lines)


def _list_models(pattern: str, prog: str) -> int:
    """Print the example names matching ``pattern`` with their family and paper; 2 if none matches."""
    names = list_models(pattern)
    if not names:
        print(f"{prog}: error: no model name matches {pattern!r} (--list-models alone lists them all)", file=sys.stderr)
        return 2
    width = max(map(len, names))
    for name in names:
        card = model_card(name)
        print(f"{name:<{width}}  {card.pattern:<24}  {card.paper}")
    return 0


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
