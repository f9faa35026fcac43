"""Benchmarks that print measured figures: ``python -m dirackit.bench fold --models diracnet-34-2``.

``fold``: inference images/s of each model before and after ``dirackit.fold``, all measured in
the same interleaved rounds, with each model's speed-up as a ratio. The output starts with the command, device, torch
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
        rows.append({"model": name, "params": count_params(model),
                     "folded_params": count_params(models[name + " folded"]), "fold_error": error})
    speed = inference_speed(models, batch_size, steps, repeats, device)
    for row in rows:
        row["unfolded_img_s"], row["folded_img_s"] = speed[row["model"]], speed[row["model"] + " folded"]
        row["speedup"] = row["folded_img_s"] / row["unfolded_img_s"]
    return rows


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
    print(f"{'model':<20}{'params':>12}{'folded params':>15}{'unfolded img/s':>16}{'folded img/s':>14}"
          f"{'speed-up':>10}{'fold error':>12}")
    for r in fold_speed(args.models, args.batch_size, args.steps, args.repeats, device):
        print(f"{r['model']:<20}{r['params']:>12,}{r['folded_params']:>15,}{r['unfolded_img_s']:>16,.0f}"
              f"{r['folded_img_s']:>14,.0f}{r['speedup']:>9.2f}x{r['fold_error']:>12.1e}")

if __name__ == "__main__":
    main()
