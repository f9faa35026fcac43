"""Fixtures for the data tests: small CIFAR-style sources made in tmp_path, and the real archive if present.

Every test here gets its own empty cache ($DIRACKIT_CACHE) and no $DIRACKIT_DATA(_CIFAR100).
"""
from __future__ import annotations

import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
ENV_DATA = os.environ.get("DIRACKIT_DATA")  # read before the autouse fixture below removes it


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: decodes the real CIFAR-10 archive (several seconds)")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIRACKIT_CACHE", str(cache))
    monkeypatch.delenv("DIRACKIT_DATA", raising=False)
    monkeypatch.delenv("DIRACKIT_DATA_CIFAR100", raising=False)
    return cache


@pytest.fixture
def real_archive() -> Path:
    """The real CIFAR-10 JPEG archive: $DIRACKIT_DATA when it names a file, else ../shared/data/."""
    for path in (Path(ENV_DATA) if ENV_DATA else None, SHARED_ARCHIVE):
        if path is not None and path.is_file():
            return path.resolve()
    pytest.skip(f"real CIFAR-10 archive not found: set DIRACKIT_DATA or provide {SHARED_ARCHIVE}")


def random_images(n: int, seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def make_tree():
    """``make_tree(root, classes=("cat", "dog", "frog"), train=4, test=2, fmt="png")`` writes
    ``root/train|test/<class>/<i>.<fmt>`` with random pixels and returns {(split, class): uint8 array}."""
    def make(root: Path, classes=("cat", "dog", "frog"), train: int = 4, test: int = 2, fmt: str = "png"):
        expected = {}
        for s, (split, n) in enumerate((("train", train), ("test", test))):
            for c, cls in enumerate(classes):
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                images = random_images(n, seed=100 * s + c)
                for i, pixels in enumerate(images):
                    Image.fromarray(pixels).save(folder / f"{i:03d}.{fmt}")
                expected[split, cls] = images
        return expected
    return make


@pytest.fixture
def make_archive():
    """``make_archive(folder, dest, top=None)``: pack ``folder``'s contents into ``dest`` (the suffix picks
    the format: .tar .tar.gz .tgz .tar.xz .zip), under the top-level folder ``top`` if given."""
    def make(folder: Path, dest: Path, top: str | None = None) -> Path:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        names = [(p, "/".join(filter(None, (top, p.relative_to(folder).as_posix())))) for p in files]
        if dest.name.endswith(".zip"):
            with zipfile.ZipFile(dest, "w") as zf:
                for path, name in names:
                    zf.write(path, name)
        else:
            mode = {"tar": "w", "gz": "w:gz", "tgz": "w:gz", "xz": "w:xz"}[dest.name.rsplit(".", 1)[1]]
            with tarfile.open(dest, mode) as tf:
                for path, name in names:
                    tf.add(path, name)
        return dest
    return make


@pytest.fixture
def make_torchvision():
    """``make_torchvision(root, variant="cifar100", train=6, test=3, num_classes=...)`` writes torchvision's
    pickle layout under ``root`` (like the real files: protocol 2, CHW rows of 3072 bytes) and returns
    (train images, train labels, test images, test labels) as HWC arrays."""
    def make(root: Path, variant: str = "cifar100", train: int = 6, test: int = 3, num_classes: int | None = None,
             bad_label: int | None = None):
        num_classes = num_classes or (100 if variant == "cifar100" else 10)
        if variant == "cifar100":
            folder, meta, key, names_key = root / "cifar-100-python", "meta", "fine_labels", "fine_label_names"
            batches = {"train": ["train"], "test": ["test"]}
        else:
            folder, meta, key, names_key = root / "cifar-10-batches-py", "batches.meta", "labels", "label_names"
            batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        folder.mkdir(parents=True)
        with open(folder / meta, "wb") as f:
            pickle.dump({names_key: [f"class{i:03d}" for i in range(num_classes)]}, f, protocol=2)
        out = []
        for s, (split, n) in enumerate((("train", train), ("test", test))):
            images = random_images(n * len(batches[split]), seed=7 + s)
            labels = np.random.default_rng(s).integers(0, num_classes, len(images))
            if bad_label is not None and split == "train":
                labels[-1] = bad_label
            for i, name in enumerate(batches[split]):
                part = slice(i * n, (i + 1) * n)
                rows = images[part].transpose(0, 3, 1, 2).reshape(n, -1)
                with open(folder / name, "wb") as f:
                    pickle.dump({"data": rows, key: labels[part].tolist(), "filenames": []}, f, protocol=2)
            out += [images, labels]
        return tuple(out)
    return make
