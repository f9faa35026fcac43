"""Deterministic subsets: exact counts per class, the same images for the same seed, full-split statistics."""
from __future__ import annotations

import pytest
import torch

from dirackit.data import CifarData, DataError, load_cifar


def data(train_per_class: int = 20, test_per_class: int = 6, num_classes: int = 5) -> CifarData:
    """Image k of class c has every pixel = k (train) or 128 + k (test) and channel 0 = c: images name themselves."""
    def split(per_class: int, base: int):
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        k = torch.arange(len(labels)) % per_class + base
        images = k[:, None, None, None].expand(-1, 32, 32, 3).clone()
        images[..., 0] = labels[:, None, None]
        return images.to(torch.uint8), labels

    return CifarData(*split(train_per_class, 0), *split(test_per_class, 128),
                     classes=tuple(f"c{i}" for i in range(num_classes)), source="made", sha256="f" * 64,
                     mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))


def test_exact_counts_and_matching_labels():
    sub = data().subset(7, 2)
    assert torch.bincount(sub.train_labels).tolist() == [7] * 5
    assert torch.bincount(sub.test_labels).tolist() == [2] * 5
    assert torch.equal(sub.train_images[:, 0, 0, 0].long(), sub.train_labels)  # images kept with their labels
    assert (sub.test_images[:, 0, 0, 1] >= 128).all()  # test images come from the test split
    assert (sub.mean, sub.std, sub.sha256) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "f" * 64)
    assert sub.classes == data().classes


def test_same_seed_same_images_other_seed_other_images():
    def picked(seed: int) -> list[tuple[int, int]]:
        sub = data().subset(7, 2, seed=seed)
        return list(zip(sub.train_labels.tolist(), sub.train_images[:, 0, 0, 1].tolist()))

    assert picked(0) == picked(0)
    assert picked(0) != picked(1)
    assert picked(0) == sorted(picked(0))  # original order kept
    assert len(set(picked(0))) == 35  # no image twice


def test_none_or_zero_keeps_a_split_whole():
    full = data()
    for keep in (None, 0):
        sub = full.subset(keep, 3)
        assert torch.equal(sub.train_images, full.train_images) and len(sub.test_labels) == 15
    whole = full.subset(None, None)
    assert torch.equal(whole.train_labels, full.train_labels) and torch.equal(whole.test_images, full.test_images)


def test_too_many_per_class():
    with pytest.raises(DataError, match="train_per_class=21 but class 'c0' has only 20 train images"):
        data().subset(21, 1)
    with pytest.raises(DataError, match="test_per_class must be >= 0"):
        data().subset(1, -1)


def test_load_cifar_subset_keeps_full_statistics(tmp_path, make_tree):
    make_tree(tmp_path / "imgs", train=5, test=3)
    full = load_cifar(tmp_path / "imgs")
    sub = load_cifar(tmp_path / "imgs", train_per_class=2, test_per_class=1)
    assert torch.bincount(sub.train_labels).tolist() == [2, 2, 2] and len(sub.test_labels) == 3
    assert sub.mean == full.mean and sub.std == full.std
    assert torch.equal(sub.train_images, full.subset(2, 1).train_images)


def test_repr_summarises_instead_of_printing_pixels():
    assert repr(data().subset(3, 2)) == ("CifarData(5 classes, 15 train / 10 test images of 32x32, source='made', "
                                         "sha256=ffffffffffff...)")
