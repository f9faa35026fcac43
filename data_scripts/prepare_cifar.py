"""Fill dirackit's CIFAR cache once: download (online) or import an archive or folder, then report it.

    python data_scripts/prepare_cifar.py --archive ../shared/data/cifar10-jpeg.tar.xz
    python data_scripts/prepare_cifar.py --download cifar100 --cache /scratch/dirackit

Without --download or --archive it prepares the default source of --dataset (cifar10: $DIRACKIT_DATA,
cifar100: $DIRACKIT_DATA_CIFAR100; else the download); with --dataset the class count is checked.
Bad input or unusable data: one line on stderr and exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from dirackit.data import DataError, load_cifar
from dirackit.data.cache import cache_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prepare_cifar.py", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--download", choices=("cifar10", "cifar100"), help="download with torchvision (online)")
    what.add_argument("--archive", metavar="PATH",
                      help="archive or folder with train|test/<class>/<image>, or a torchvision CIFAR root")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100"),
                        help="which CIFAR: picks the default source and checks the class count")
    parser.add_argument("--cache", metavar="DIR", help="cache folder (default: $DIRACKIT_CACHE or ~/.cache/dirackit)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        data = load_cifar(args.download or args.archive, dataset=args.dataset, cache_dir=args.cache)
    except (DataError, OSError) as e:
        print(f"{parser.prog}: error: {(str(e).splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start

    print(f"source   {data.source}")
    print(f"sha256   {data.sha256}")
    print(f"classes  {data.num_classes}: {', '.join(data.classes)}")
    for split, labels in (("train", data.train_labels), ("test", data.test_labels)):
        counts = torch.bincount(labels, minlength=data.num_classes)
        per_class = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"
        print(f"{split:<8} {len(labels)} images, {per_class} per class")
    print(f"mean     {' '.join(f'{255 * m:.2f}' for m in data.mean)}  (train split, 0-255, R G B)")
    print(f"std      {' '.join(f'{255 * s:.2f}' for s in data.std)}")
    print(f"cache    {cache_file(data.sha256, args.cache)} (ready in {seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
