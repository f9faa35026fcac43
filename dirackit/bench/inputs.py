"""Benchmark data: CIFAR from the local cache when there is one, else synthetic images of the same shape;
and the reference style's input pipeline (PIL images, torchvision transforms, DataLoader workers)."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ..data import CifarData, DataError, load_cifar

__all__ = ["synthetic_cifar", "bench_data", "PilCifar", "reference_transform", "reference_loader"]


def synthetic_cifar(train_images: int = 50_000, test_images: int = 10_000, seed: int = 0) -> CifarData:
    """Uniform random uint8 images and labels shaped like CIFAR-10: for speed only (chance accuracy).

    The image count matches CIFAR-10 by default so loaders see the same epoch length as on real data.
    """
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
                torch.randint(0, 10, (n,), generator=g))

    (train_x, train_y), (test_x, test_y) = split(train_images), split(test_images)
    std = ((256**2 - 1) / 12) ** 0.5 / 255  # of the discrete uniform distribution on 0..255
    return CifarData(train_x, train_y, test_x, test_y, classes=tuple(str(c) for c in range(10)),
                     source="synthetic", sha256="", mean=(0.5, 0.5, 0.5), std=(std, std, std))


def bench_data(source: str | os.PathLike | None = None, *, synthetic: bool = False,
               fallback: bool = True) -> tuple[CifarData, str]:
    """``(data, one line saying what it is)``; never downloads, so a benchmark cannot hang offline.

    ``source`` is as for ``load_cifar`` (None: ``$DIRACKIT_DATA``, else the cached CIFAR-10 download).
    When it cannot be loaded, ``fallback`` picks synthetic images (speed figures do not depend on
    pixel values); without it the load error is raised.
    """
    if synthetic:
        return _described(synthetic_cifar(), "--synthetic")
    try:
        return _described(load_cifar(source, download=False))
    except DataError as error:
        if not fallback:
            raise
        return _described(synthetic_cifar(), f"no CIFAR here: {str(error).splitlines()[0]}")


def _described(data: CifarData, why: str | None = None) -> tuple[CifarData, str]:
    kind = "synthetic uint8 images" if data.source == "synthetic" else data.source
    about = f"{kind}, {len(data.train_labels):,} train / {len(data.test_labels):,} test images"
    return data, about + (f" ({why})" if why else "")


class PilCifar(Dataset):
    """uint8 ``(N, H, W, 3)`` images served one at a time as PIL images through ``transform``.

    The reference style's dataset: per-image Python, PIL and a tensor conversion in a worker process,
    as torchvision's ``CIFAR10`` does.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: transforms.Compose):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        self.images: np.ndarray = images.numpy()
        self.labels: list[int] = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def reference_transform(mean: tuple[float, ...], std: tuple[float, ...], size: int = 32,
                        crop_pad: int = 4) -> transforms.Compose:
    """The usual torchvision CIFAR augmentation: zero-padded random crop, flip, to float, normalise."""
    return transforms.Compose([transforms.RandomCrop(size, padding=crop_pad), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), transforms.Normalize(mean, std)])


def reference_loader(data: CifarData, batch_size: int, workers: int, pin_memory: bool,
                     seed: int = 0) -> DataLoader:
    """Shuffled training batches of ``data`` through PIL and ``workers`` processes (0: in this process).

    Workers are not persistent, PyTorch's default: each epoch starts them again, as reference
    training scripts do.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    dataset = PilCifar(data.train_images, data.train_labels,
                       reference_transform(data.mean, data.std, size=data.train_images.shape[1]))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=pin_memory,
                      drop_last=True, generator=torch.Generator().manual_seed(seed))
