"""``python -m dirackit.train``: train a registered model on CIFAR from the command line."""
from __future__ import annotations

import argparse
import sys

import torch

from ..checkpoint import CheckpointError
from ..data import load_cifar
from ..recipes import PRESETS, get_recipe
from ..registry import build_model, model_card
from . import TrainingDiverged, fit, resolve_device


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line instead of argparse's full usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m dirackit.train``: bad input exits 2 with one line on stderr, never a traceback."""
    parser = _Parser(prog="python -m dirackit.train", description="Train a dirackit model on CIFAR.")
    parser.add_argument("--model", required=True, help="registry name, e.g. wrn-28-10, wrn-16-4")
    parser.add_argument("--data", default=None, help="archive, folder, torchvision root, cifar10 or cifar100 "
                                                     "(default: $DIRACKIT_DATA, else CIFAR-10 download)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", required=True, help="run folder (log, provenance, checkpoint)")
    parser.add_argument("--recipe", choices=sorted(PRESETS), default=None, help="default: the model's paper recipe")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--dropout", type=float, default=None, help="WRN dropout between the block's convs")
    parser.add_argument("--subset", type=int, default=None, metavar="N_PER_CLASS",
                        help="train on N images per class (and N/5 test images per class)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    try:
        options = {} if args.dropout is None else {"dropout": args.dropout}
        recipe = get_recipe(args.recipe or model_card(args.model).recipe)
        changes = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
        recipe = recipe.replace(**{k: v for k, v in changes.items() if v is not None})
        if args.subset is not None and args.subset < 1:
            raise ValueError(f"--subset must be >= 1 images per class, got {args.subset}")
        device = resolve_device(args.device)
        data = load_cifar(args.data)
        if args.subset:
            data = data.subset(args.subset, max(1, args.subset // 5))
        torch.manual_seed(args.seed)
        model = build_model(args.model, num_classes=data.num_classes, **options)
        run = fit(model, data, recipe, out=args.out, resume=args.resume, progress=not args.no_progress,
                  device=device)
    except (ValueError, TypeError, OSError, TrainingDiverged, CheckpointError) as e:  # DataError: ValueError
        return fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
        return fail(f"interrupted; continue with the same command plus --resume (the last epoch's "
                    f"checkpoint is in {args.out})")
    last = run.last
    print(f"done: {len(run.rows)} epochs, test acc {last.get('test_acc', float('nan')):.4f}, run folder {args.out}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
