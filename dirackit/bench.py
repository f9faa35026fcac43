"""Benchmarks that print measured figures: ``python -m dirackit.bench fold --models diracnet-34-2``.

``fold``: inference images/s of each model before and after ``dirackit.fold``, all measured in
the same interleaved rounds, with each model's speed-up as a ratio.

``train``: training images/s (forward, backward, SGD step) of each model, all in the same
interleaved rounds, and each model's cost as a ratio to the first one: how much a DBB's branches
cost over the plain network, ``train --models vgg16 vgg16-dbb vgg16-odbb``.

``dgmask``: what building a DGConv's mask U costs next to the layer's own forward and backward
pass, for the chain of Kronecker products dirackit uses and for the closed form written out entry
by entry.

The output starts with the command, device, torch version and date, so it can be saved to
``benchmarks/`` as it is.
"""
from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from datetime import datetime, timezone

import torch

from .folding import check_fold, fold
from .layers import DGConv2d
from .metrics import count_macs, count_params, inference_speed, training_speed
from .registry import build_model
from .train import resolve_device

__all__ = ["fold_speed", "train_speed", "mask_cost", "main"]


def fold_speed(names: list[str], batch_size: int = 256, steps: int = 10, repeats: int = 3,
               device: str | torch.device = "cpu") -> list[dict]:
    """Unfolded and folded inference img/s of freshly built models, and each fold's output error.

    Every form of every model is timed in the same interleaved rounds, so all the figures (not
    only each model's speed-up) are comparable.
    """
    models, rows = {}, []
    for name in names:
        torch.manual_seed(0)
        model = build_model(name).eval()
        error = check_fold(model, torch.randn(8, 3, 32, 32))
        models[name], models[name + " folded"] = model, fold(model)
        rows.append({"model": name, "params": count_params(model), "macs": count_macs(model),
                     "folded_params": count_params(models[name + " folded"]),
                     "folded_macs": count_macs(models[name + " folded"]), "fold_error": error})
    speed = inference_speed(models, batch_size, steps, repeats, device)
    for row in rows:
        row["unfolded_img_s"], row["folded_img_s"] = speed[row["model"]], speed[row["model"] + " folded"]
        row["speedup"] = row["folded_img_s"] / row["unfolded_img_s"]
    return rows


def train_speed(names: list[str], batch_size: int = 128, steps: int = 10, repeats: int = 3,
                device: str | torch.device = "cpu") -> list[dict]:
    """Training img/s of freshly built models, and each one's step time relative to the first."""
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = build_model(name)
    rows = [{"model": name, "params": count_params(m), "macs": count_macs(m)} for name, m in models.items()]
    speed = training_speed(models, batch_size, steps, repeats, device)
    for row in rows:
        row["train_img_s"] = speed[row["model"]]
        row["step_time_ratio"] = speed[names[0]] / row["train_img_s"]
    return rows


def _closed_form_mask(gates: torch.Tensor) -> torch.Tensor:
    """U entry by entry: ``U[o, i] = prod_k (1 - (1 - g_k) [bit_k(o) != bit_k(i)])``, one C x C
    product per gate (the alternative to the Kronecker chain that ``gate_mask`` uses)."""
    channels = 2 ** gates.numel()
    shifts = torch.arange(gates.numel() - 1, -1, -1, device=gates.device)
    bits = (torch.arange(channels, device=gates.device)[None, :] >> shifts[:, None]) & 1
    mask = torch.ones((), device=gates.device)
    for g, b in zip(gates, bits):
        mask = mask * (1 - (1 - g) * (b[:, None] != b[None, :]).to(gates.dtype))
    return mask


def _best_seconds(fn, steps: int, repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def mask_cost(channels: int, size: int, batch_size: int = 128, steps: int = 10, repeats: int = 3,
              device: str | torch.device = "cpu") -> dict:
    """Seconds per forward+backward of: U by Kronecker products (dirackit's), U in closed form, the
    whole layer."""
    device = torch.device(device)
    torch.manual_seed(0)
    layer = DGConv2d(channels, channels, 3, padding=1).to(device)
    x = torch.randn(batch_size, channels, size, size, device=device)

    def kronecker():
        layer.mask().sum().backward()

    def closed_form():
        _closed_form_mask(layer.binary_gates()).sum().backward()

    def whole_layer():
        layer(x).square().mean().backward()

    times = {name: _best_seconds(fn, steps, repeats, device)
             for name, fn in (("kronecker", kronecker), ("closed_form", closed_form), ("layer", whole_layer))}
    return {"channels": channels, "size": size, **times}


def _header(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    command = "python -m dirackit.bench " + shlex.join(sys.argv[1:])
    return (f"# {command}\n# device: {name}; torch {torch.__version__}; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dirackit.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    commands = {
        "fold": ("inference speed before and after dirackit.fold", 256, "batches"),
        "train": ("training speed of models, relative to the first one", 128, "training steps"),
        "dgmask": ("cost of building DGConv masks against the layer's own step", 128, "calls"),
    }
    for what, (summary, batch_size, unit) in commands.items():
        p = sub.add_parser(what, help=summary)
        p.add_argument("--batch-size", type=int, default=batch_size)
        p.add_argument("--steps", type=int, default=10, help=f"{unit} per timed round")
        p.add_argument("--repeats", type=int, default=3, help="timed rounds; the best one counts")
        p.add_argument("--device", default="auto")
        if what == "fold":
            p.add_argument("--models", nargs="+", default=["diracnet-34-2", "plain-34-2", "wrn-16-4"])
        elif what == "train":
            p.add_argument("--models", nargs="+", default=["vgg16", "vgg16-dbb", "vgg16-odbb"])
        else:
            p.add_argument("--layers", nargs="+", default=["128@32", "256@16", "512@8"],
                           help="CHANNELS@SIZE per layer (default: G-ResNeXt-29 32x4d's DGConvs)")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.what in ("fold", "train"):
            for name in args.models:
                build_model(name)
        else:
            layers = [_parse_layer(spec) for spec in args.layers]
    except ValueError as error:
        parser.error(str(error))
    print(_header(device))
    if args.what == "fold":
        _print_fold(fold_speed(args.models, args.batch_size, args.steps, args.repeats, device))
    elif args.what == "train":
        print(f"batch {args.batch_size}; {'bf16 autocast' if device.type == 'cuda' else 'fp32'}; "
              f"step time relative to {args.models[0]}")
        print(f"{'model':<20}{'params':>12}{'MMACs':>9}{'train img/s':>13}{'step time':>11}")
        for r in train_speed(args.models, args.batch_size, args.steps, args.repeats, device):
            print(f"{r['model']:<20}{r['params']:>12,}{r['macs'] / 1e6:>9,.1f}{r['train_img_s']:>13,.0f}"
                  f"{r['step_time_ratio']:>10.2f}x")
    else:
        print(f"batch {args.batch_size}; times per forward+backward")
        print(f"{'layer':<12}{'Kronecker U':>13}{'closed-form U':>15}{'whole layer':>13}{'U / layer':>11}"
              f"{'closed / Kronecker':>20}")
        for channels, size in layers:
            r = mask_cost(channels, size, args.batch_size, args.steps, args.repeats, device)
            print(f"{f'{channels}@{size}':<12}{r['kronecker'] * 1e3:>10.3f} ms{r['closed_form'] * 1e3:>12.3f} ms"
                  f"{r['layer'] * 1e3:>10.2f} ms{r['kronecker'] / r['layer']:>10.1%}"
                  f"{r['closed_form'] / r['kronecker']:>19.1f}x")


def _parse_layer(spec: str) -> tuple[int, int]:
    try:
        channels, size = (int(v) for v in spec.split("@"))
    except ValueError:
        raise ValueError(f"a layer is CHANNELS@SIZE such as 128@32, got {spec!r}") from None
    DGConv2d(channels, channels, 3)  # a clear error for channel counts a DGConv cannot have
    return channels, size


def _print_fold(rows: list[dict]) -> None:
    print(f"{'model':<20}{'params':>12}{'folded params':>15}{'MMACs':>9}{'folded MMACs':>14}{'unfolded img/s':>16}"
          f"{'folded img/s':>14}{'speed-up':>10}{'fold error':>12}")
    for r in rows:
        print(f"{r['model']:<20}{r['params']:>12,}{r['folded_params']:>15,}{r['macs'] / 1e6:>9,.1f}"
              f"{r['folded_macs'] / 1e6:>14,.1f}{r['unfolded_img_s']:>16,.0f}{r['folded_img_s']:>14,.0f}"
              f"{r['speedup']:>9.2f}x{r['fold_error']:>12.1e}")


if __name__ == "__main__":
    main()
