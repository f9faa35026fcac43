"""Benchmarks that print measured figures: ``python -m dirackit.bench fold --models diracnet-34-2``.

``fold``: inference images/s of each model before and after ``dirackit.fold``, both measured in
the same run, with the speed-up as their ratio. The output starts with the command, device, torch
version and date, so it can be saved to ``benchmarks/`` as it is.
"""
from __future__ import annotations

import argparse
import platform
import shlex
import sys
from datetime import datetime, timezone

import torch

from .folding import check_fold, fold
from .metrics import count_params, inference_speed
from .registry import build_model
from .train import resolve_device

__all__ = ["fold_speed", "main"]


def fold_speed(name: str, batch_size: int = 256, steps: int = 10, repeats: int = 3,
               device: str | torch.device = "cpu") -> dict:
    """Unfolded and folded inference img/s of a freshly built model, and the fold's output error."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    error = check_fold(model, torch.randn(8, 3, 32, 32))
    folded = fold(model)
    speed = inference_speed({"unfolded": model, "folded": folded}, batch_size, steps, repeats, device)
    return {"model": name, "params": count_params(model), "folded_params": count_params(folded),
            "unfolded_img_s": speed["unfolded"], "folded_img_s": speed["folded"],
            "speedup": speed["folded"] / speed["unfolded"], "fold_error": error}


def _header(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    command = "python -m dirackit.bench " + shlex.join(sys.argv[1:])
    return (f"# {command}\n# device: {name}; torch {torch.__version__}; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dirackit.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("fold", help="inference speed before and after dirackit.fold")
    p.add_argument("--models", nargs="+", default=["diracnet-34-2", "plain-34-2", "wrn-16-4"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="batches per timed round")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; the best one counts")
    p.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        for name in args.models:
            build_model(name)
    except ValueError as error:
        parser.error(str(error))
    print(_header(device))
    print(f"{'model':<18}{'params':>12}{'unfolded img/s':>16}{'folded img/s':>14}{'speed-up':>10}{'fold error':>12}")
    for name in args.models:
        r = fold_speed(name, args.batch_size, args.steps, args.repeats, device)
        print(f"{name:<18}{r['params']:>12,}{r['unfolded_img_s']:>16,.0f}{r['folded_img_s']:>14,.0f}"
              f"{r['speedup']:>9.2f}x{r['fold_error']:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
