"""``CifarData``: a decoded CIFAR-style dataset held as uint8 tensors, and its deterministic subsets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


class DataError(ValueError):
    """A data problem with a one-line message that says what was wrong and what to do."""


@dataclass(frozen=True, eq=False)  # eq would compare tensors element-wise: ambiguous, so identity instead
class CifarData:
    """Both splits of a dataset as CPU uint8 images ``(N, 32, 32, 3)`` and int64 labels ``(N,)``.

    ``mean``/``std`` are the per-channel statistics of the *full* train split on the 0..1 scale, so a
    subset is normalised exactly as the whole set would be.
    """
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    source: str
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        """A summary, not the pixels: what a notebook cell ending in ``data`` should show."""
        size = "x".join(map(str, self.train_images.shape[1:3]))
        return (f"CifarData({self.num_classes} classes, {len(self.train_labels):,} train / "
                f"{len(self.test_labels):,} test images of {size}, source={self.source!r}, "
                f"sha256={self.sha256[:12]}...)")

    def subset(self, train_per_class: int | None, test_per_class: int | None, seed: int = 0) -> CifarData:
        """``train_per_class`` / ``test_per_class`` images of every class (None or 0 keeps the split whole).

        The choice depends only on the labels and ``seed``, so CI and quick runs see the same images on
        every machine; chosen images keep their original order.
        """
        def pick(images: torch.Tensor, labels: torch.Tensor, per_class: int | None, split: str):
            if not per_class:
                return images, labels
            if per_class < 0:
                raise DataError(f"{split}_per_class must be >= 0, got {per_class}")
            g = torch.Generator().manual_seed(seed)
            keep = []
            for c, name in enumerate(self.classes):
                idx = (labels == c).nonzero().flatten()
                if len(idx) < per_class:
                    raise DataError(f"{split}_per_class={per_class} but class {name!r} has only {len(idx)} "
                                    f"{split} images in {self.source}: ask for at most {len(idx)}")
                keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
            idx = torch.cat(keep).sort().values
            return images[idx], labels[idx]

        train = pick(self.train_images, self.train_labels, train_per_class, "train")
        test = pick(self.test_images, self.test_labels, test_per_class, "test")
        return dataclasses.replace(self, train_images=train[0], train_labels=train[1],
                                   test_images=test[0], test_labels=test[1])
