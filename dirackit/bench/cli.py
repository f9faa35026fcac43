"""``python -m dirackit.bench``: the command line, and the tables each subcommand prints.

Every output starts with the command, device, torch version and date, so it can be saved under
``benchmarks/`` as ``<name>-<device>-<date>.txt`` as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone

import torch

from ..atomic import atomic_write
from ..data import CifarData, DataError
from ..recipes import PRESETS, Recipe, get_recipe
from ..registry import build_model
from ..train import resolve_device
from .accuracy import time_to_accuracy
from .inputs import bench_data
from .dgmask import mask_cost, parse_layer
from .diracops import check_dirac_model, dirac_ops
from .fold_speed import fold_table
from .gpu_check import add_gpu_check, gpu_check
from .paths import path_speed
from .peak import matmul_peak
from ..precision import describe_precision
from .steps import COMPILE_MODES, compile_mode_for
from .train_speed import train_speed

__all__ = ["main", "header"]

PAPER_MODELS = ["wrn-28-10", "diracnet-34-2", "diracnet-100-1", "resnext-29-32x4d", "g-resnext-29-32x4d",
                "vgg16", "vgg16-dbb", "vgg16-odbb", "resnet18", "resnet18-dbb", "resnet18-odbb"]


def header(device: torch.device, argv: list[str]) -> str:
    """The first two lines of every output: the command, the device, the torch version and the date."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    return (f"# python -m dirackit.bench {shlex.join(argv)}\n# device: {name}; torch {torch.__version__}; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns as wide as their widest cell: the first left-aligned, the others right-aligned."""
    widths = [max(map(len, column)) for column in zip(header, *rows)]
    for cells in (header, *rows):
        print(cells[0].ljust(widths[0]) + "".join(c.rjust(w + 2) for c, w in zip(cells[1:], widths[1:])))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dirackit.bench",
                                     description="Benchmarks that print measured figures.")
    sub = parser.add_subparsers(dest="what", required=True)
    timed = {
        "fold": ("inference speed before and after dirackit.fold", 256, "batches"),
        "train": ("training speed of models, relative to the first one", 128, "training steps"),
        "dgmask": ("cost of building DGConv masks against the layer's own step", 128, "calls"),
        "paths": ("reference-style training against dirackit's fast path: img/s, memory, MFU, folding",
                  None, "training steps"),
        "dirac-ops": ("aten ops and time of a DiracNet training step, Dirac weights per layer against fused",
                      64, "training steps"),
    }
    for what, (summary, batch_size, unit) in timed.items():
        p = sub.add_parser(what, help=summary, description=summary)
        p.add_argument("--batch-size", type=int, default=batch_size,
                       help="default: each model's recipe (its paper's batch)" if batch_size is None else None)
        p.add_argument("--steps", type=int, default=20 if what == "paths" else 10, help=f"{unit} per timed round")
        p.add_argument("--repeats", type=int, default=3,
                       help=f"timed rounds; the {'median' if what == 'dirac-ops' else 'best'} one counts")
        p.add_argument("--device", default="auto")
    commands = sub.choices
    commands["fold"].add_argument("--models", nargs="+", default=["diracnet-34-2", "plain-34-2", "wrn-16-4"])
    commands["train"].add_argument("--models", nargs="+", default=["vgg16", "vgg16-dbb", "vgg16-odbb"])
    commands["dirac-ops"].add_argument("--models", nargs="+", default=["diracnet-34-2", "diracnet-100-1"])
    commands["dgmask"].add_argument("--layers", nargs="+", default=["128@32", "256@16", "512@8"],
                                    help="CHANNELS@SIZE per layer (default: G-ResNeXt-29 32x4d's DGConvs)")
    paths = commands["paths"]
    paths.add_argument("--models", nargs="+", default=PAPER_MODELS,
                       help="default: every family at its paper size")
    paths.add_argument("--fast-batch-size", type=int, default=None,
                       help="the fast path's batch (default: --batch-size)")
    paths.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                       help="DataLoader processes of the reference path (default: min(8, CPU count))")
    paths.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, default=None,
                       help="torch.compile the fast path's model, in this mode (default mode if none given)")
    paths.add_argument("--peak-size", type=int, default=None,
                       help="side of the peak matmul (default: 8192 CUDA, 1024 CPU)")

    tta = sub.add_parser("time-to-accuracy", help="seconds fit() needs to reach a test accuracy",
                         description="Seconds dirackit.train.fit needs to reach a test accuracy with a recipe.")
    tta.add_argument("--models", nargs="+", default=["wrn-16-8"])
    tta.add_argument("--recipe", choices=sorted(PRESETS), default="fast")
    tta.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    tta.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    tta.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    tta.add_argument("--compile", action="store_true", help="torch.compile the model (recipe.compile)")
    tta.add_argument("--test-flip", action="store_true",
                     help="evaluate each test image and its mirror, logits averaged (recipe.test_flip)")
    tta.add_argument("--target", type=float, default=None,
                     help="stop at this test accuracy, e.g. 0.90 (default: train all epochs)")
    tta.add_argument("--subset", type=int, default=None, metavar="N_PER_CLASS",
                     help="train on N images per class and test on N/5 per class")
    tta.add_argument("--device", default="auto")
    for p in (paths, tta):
        p.add_argument("--data", default=None, help="CIFAR source as for load_cifar (default: $DIRACKIT_DATA, "
                                                    "else the cached CIFAR-10); never downloads")
        p.add_argument("--synthetic", action="store_true", help="random uint8 images instead of CIFAR")
    for p in sub.choices.values():
        p.add_argument("--json", default=None, metavar="PATH", help="also write the table's rows to PATH as JSON")
    add_gpu_check(sub)
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    """Run one benchmark, print its table and return its rows; bad arguments exit with status 2 and one
    message. ``gpu-check`` exits with its own status (``gpu_check``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.what == "gpu-check":
        sys.exit(gpu_check(args, argv, parser))
    try:
        device = resolve_device(args.device)
        _check_numbers(args)
        for name in getattr(args, "models", ()):
            (check_dirac_model if args.what == "dirac-ops" else build_model)(name)
        layers = [parse_layer(spec) for spec in args.layers] if args.what == "dgmask" else []
        recipe = _recipe(args) if args.what == "time-to-accuracy" else None
        data, about_data = _data(args) if args.what in ("paths", "time-to-accuracy") else (None, "")
    except ValueError as error:  # DataError included
        parser.error(str(error).splitlines()[0])
    shown = [a for i, a in enumerate(argv) if a != "--json" and (i == 0 or argv[i - 1] != "--json")]
    print(header(device, shown), flush=True)  # without --json: the command that prints this table
    if args.what == "fold":
        rows = _print_fold(fold_table(args.models, args.batch_size, args.steps, args.repeats, device))
    elif args.what == "train":
        rows = _print_train(args, device)
    elif args.what == "dgmask":
        rows = _print_dgmask(args, layers, device)
    elif args.what == "dirac-ops":
        rows = _print_dirac_ops(args, device)
    elif args.what == "paths":
        rows = _print_paths(args, data, about_data, device)
    else:
        rows = _print_time_to_accuracy(args, data, about_data, recipe, device)
    if args.json:
        atomic_write(args.json, lambda f: f.write(json.dumps(rows, indent=1).encode()))
    return rows


def _check_numbers(args: argparse.Namespace) -> None:
    for key in ("batch_size", "fast_batch_size", "steps", "repeats", "epochs", "subset", "peak_size"):
        value = getattr(args, key, None)
        if value is not None and value < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "workers", 0) < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")


def _recipe(args: argparse.Namespace) -> Recipe:
    changes = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "test_flip": args.test_flip or None}
    return get_recipe(args.recipe).replace(compile=args.compile, **{k: v for k, v in changes.items() if v is not None})


def _data(args: argparse.Namespace) -> tuple[CifarData, str]:
    """``paths`` falls back to synthetic images; ``time-to-accuracy`` needs CIFAR unless told otherwise."""
    if args.what == "paths":
        return bench_data(args.data, synthetic=args.synthetic)
    try:
        data, about = bench_data(args.data, synthetic=args.synthetic, fallback=False)
    except DataError as error:
        raise ValueError(f"{str(error).splitlines()[0]}; time-to-accuracy needs CIFAR: pass --data SOURCE, "
                         f"or --synthetic for a smoke run") from None
    if args.subset:
        test = max(1, args.subset // 5)
        data = data.subset(args.subset, test)
        about += f"; subset of {args.subset} train / {test} test images per class"
    return data, about


def _print_fold(rows: list[dict]) -> list[dict]:
    _print_table(["model", "params", "folded params", "MMACs", "folded MMACs", "unfolded img/s", "folded img/s",
                  "speed-up", "fold error"],
                 [[r["model"], f"{r['params']:,}", f"{r['folded_params']:,}", f"{r['macs'] / 1e6:,.1f}",
                   f"{r['folded_macs'] / 1e6:,.1f}", f"{r['unfolded_img_s']:,.0f}", f"{r['folded_img_s']:,.0f}",
                   f"{r['fold_speedup']:.2f}x", f"{r['fold_error']:.1e}"] for r in rows])
    return rows


def _print_train(args: argparse.Namespace, device: torch.device) -> list[dict]:
    print(f"batch {args.batch_size}; {describe_precision('auto', device)}; step time relative to {args.models[0]}")
    rows = train_speed(args.models, args.batch_size, args.steps, args.repeats, device)
    _print_table(["model", "params", "MMACs", "train img/s", "step time"],
                 [[r["model"], f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f}", f"{r['train_img_s']:,.0f}",
                   f"{r['step_time_ratio']:.2f}x"] for r in rows])
    return rows


def _print_dgmask(args: argparse.Namespace, layers: list[tuple[int, int]], device: torch.device) -> list[dict]:
    print(f"batch {args.batch_size}; times per forward+backward")
    results, rows = [], []
    for channels, size in layers:
        r = mask_cost(channels, size, args.batch_size, args.steps, args.repeats, device)
        results.append(r)
        rows.append([f"{channels}@{size}", f"{r['kronecker'] * 1e3:.3f} ms", f"{r['closed_form'] * 1e3:.3f} ms",
                     f"{r['layer'] * 1e3:.2f} ms", f"{r['kronecker'] / r['layer']:.1%}",
                     f"{r['closed_form'] / r['kronecker']:.1f}x"])
    _print_table(["layer", "Kronecker U", "closed-form U", "whole layer", "U / layer", "closed / Kronecker"], rows)
    return results


def _print_dirac_ops(args: argparse.Namespace, device: torch.device) -> list[dict]:
    print(f"batch {args.batch_size}, fp32; a training step: forward with cross-entropy, backward, the diracnet "
          f"recipe's SGD step (torch's default implementation on {device.type}: "
          f"{'foreach' if device.type == 'cuda' else 'a loop over the tensors'}), the same for both forms")
    print("ops: the aten operators dispatched below autograd in one step after a warm-up step, counted with a "
          "TorchDispatchMode (on a GPU each is about one kernel launch); views and empty allocations launch no "
          "kernel and are counted apart")
    print(f"time: median over {args.repeats} rounds of {args.steps} steps, the two forms taking turns on the same "
          f"model, optimizer and batch; ratios are fused / per-layer")
    rows = dirac_ops(args.models, args.batch_size, args.steps, args.repeats, device)
    _print_table(["model", "Dirac weights", "computed in", "forward ops", "backward ops", "SGD ops", "ops",
                  "views etc.", "ops ratio", "ms/step", "time ratio"],
                 [[r["model"], "fused" if r["fused"] else "per layer",
                   f"{r['computations']} {'groups' if r['fused'] else 'layers'}", f"{r['forward']:,}",
                   f"{r['backward']:,}", f"{r['optimizer']:,}", f"{r['ops']:,}", f"{r['views']:,}",
                   f"{r['ops_ratio']:.2f}x", f"{r['step_s'] * 1e3:,.1f}", f"{r['time_ratio']:.2f}x"] for r in rows])
    return rows


def _print_paths(args: argparse.Namespace, data: CifarData, about_data: str, device: torch.device) -> list[dict]:
    cuda = device.type == "cuda"
    compile_mode, why = compile_mode_for(args.compile, device)
    lead_in = 2 * args.workers
    print(f"data: {about_data}")
    print(f"reference: fp32 eager NCHW{' (cuDNN may use TF32, the PyTorch default)' if cuda else ''}; "
          f"torchvision DataLoader over PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, "
          f"Normalize), workers={args.workers}{', pin_memory' if cuda else ''}; SGD on all parameters")
    precision = describe_precision("auto", device)
    print(f"fast: GpuLoader on {device.type}; {precision}{', channels_last' if cuda else ''}; "
          f"compile {compile_mode or 'off'}; the recipe's parameter groups, as fit() trains")
    for skipped in ([why] if why else []) + ([] if cuda else ["channels_last: fit() uses it on CUDA only"]):
        print(f"skipped on {device.type}: {skipped}")
    peak = matmul_peak(device, args.peak_size)
    print(f"peak: {peak.describe()}, the fast path's precision; MFU = img/s x 6 x MACs / peak")
    print("memory: " + ("peak torch.cuda.max_memory_allocated of each path: what it keeps between steps "
                        "(weights, optimizer state, the fast path's uint8 data) plus the most one round adds"
                        if cuda else f"n/a on {device.type} (no per-path peak counter; only CUDA's allocator has one)"))
    print(f"timing: best of {args.repeats} rounds of {args.steps} steps, the two paths in turns; each reference "
          f"round starts with {lead_in} untimed steps (2 x workers: drains the batches prefetched meanwhile)")
    print(f"inference: eval mode, batch of the fast path, {precision}{', channels_last' if cuda else ''}; "
          f"before and after dirackit.fold")
    rows = path_speed(args.models, data, batch_size=args.batch_size, fast_batch_size=args.fast_batch_size,
                      steps=args.steps, repeats=args.repeats, workers=args.workers, compile_mode=compile_mode,
                      peak=peak, device=device)

    def mib(n: int | None) -> str:
        return "n/a" if n is None else f"{n / 2**20:,.0f}"

    _print_table(["model", "MMACs", "batch", "ref img/s", "fast img/s", "fast/ref", "ref MiB", "fast MiB",
                  "ref MFU", "fast MFU", "warm-up s", "infer img/s", "folded img/s", "fold"],
                 [[r["model"], f"{r['macs'] / 1e6:,.1f}", f"{r['batch']}/{r['fast_batch']}", f"{r['ref_img_s']:,.0f}",
                   f"{r['fast_img_s']:,.0f}", f"{r['ratio']:.2f}x", mib(r["ref_peak_bytes"]),
                   mib(r["fast_peak_bytes"]), f"{r['ref_mfu']:.2%}", f"{r['fast_mfu']:.2%}",
                   f"{r['fast_warmup_s']:.1f}", f"{r['unfolded_img_s']:,.0f}", f"{r['folded_img_s']:,.0f}",
                   f"{r['fold_speedup']:.2f}x"] for r in rows])
    return rows


def _print_time_to_accuracy(args: argparse.Namespace, data: CifarData, about_data: str, recipe: Recipe,
                            device: torch.device) -> list[dict]:
    print(f"data: {about_data}" + ("; synthetic labels are random, so accuracy stays at chance" if
                                   args.synthetic else ""))
    shown = ("epochs", "batch_size", "lr", "schedule", "weight_decay", "label_smoothing", "test_flip", "precision",
             "channels_last", "compile")
    print(f"recipe {args.recipe}: " + ", ".join(f"{k}={getattr(recipe, k)}" for k in shown)
          + f"; {describe_precision(recipe.precision, device)}"
          + ("" if device.type == "cuda" else "; channels_last applies on CUDA only"))
    print("seconds: from calling fit() to the end of the evaluation that reached the target, else of the last "
          "epoch (data to the device, compile warm-up, training, every evaluation); fit s: fit's own per-epoch "
          "train + eval timers")
    rows = [time_to_accuracy(name, data, recipe, args.target, device) for name in args.models]
    _print_table(["model", "target", "reached", "epoch", "seconds", "fit s", "test acc", "best acc"],
                 [[r["model"], "none" if r["target"] is None else f"{r['target']:.1%}",
                   "yes" if r["reached"] else ("-" if r["target"] is None else "no"), f"{r['epoch']}/{r['epochs']}",
                   f"{r['seconds']:.1f}", f"{r['fit_seconds']:.1f}", f"{r['test_acc']:.2%}", f"{r['best_acc']:.2%}"]
                  for r in rows])
    for r in rows:
        if r["target"] is not None and not r["reached"]:
            print(f"{r['model']}: target {r['target']:.1%} not reached in {r['epochs']} epochs "
                  f"(best {r['best_acc']:.2%})")
    return rows
