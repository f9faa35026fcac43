"""``load_cifar``: decode a source once, then load it from a uint8 cache file in well under a second.

The cache file is named by the source's content hash, so the same archive at two paths shares one
file and a changed archive gets a new one. Hashing a big source on every load would cost more than
loading the cache, so ``index.json`` maps a stat fingerprint (paths, sizes, mtimes, inodes, ctimes)
to the hash. As in git's index, a file modified within the filesystem's timestamp granularity of
being indexed could keep its times, so sources changed in the last few seconds are hashed every time.
Both files are written to a temporary name in the same folder and renamed into place (``os.replace``
is atomic), so two processes filling the cache at once each write a whole file and the last rename
wins; readers never see half a file, and the temporary files of a killed fill are removed by the next
load. Cache files hold plain arrays (``np.savez``, no pickle) and a CRC-32 of them, checked on every
load: a damaged file is decoded again, with a warning, never served.
"""
from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write, remove_stale_temporaries
from .dataset import CifarData, DataError
from .decode import decode_images
from .sources import DATA_VARIABLE, DATASETS, SPLITS, Source, cache_root, content_hash, fetch, fingerprint, \
    locate, read_images, read_torchvision

FORMAT = 2  # bump when the cache file's contents change (2: the checksum)
INDEX_SIZE = 256  # fingerprints remembered
SETTLED_NS = 3_000_000_000  # sources younger than this are not indexed (see above)


def load_cifar(source: str | os.PathLike | None = None, *, dataset: str | None = None,
               train_per_class: int | None = None, test_per_class: int | None = None,
               cache_dir: str | os.PathLike | None = None, download: bool = True) -> CifarData:
    """Load CIFAR as uint8 tensors, decoding the source only the first time.

    ``source``: "cifar10" / "cifar100" (torchvision download, once, into ``<cache>/torchvision``), an
    image-folder directory or archive (.tar .tar.gz .tgz .tar.xz .zip) with ``train|test/<class>/<image>``,
    or a torchvision root. ``dataset`` ("cifar10" or "cifar100") says which CIFAR is wanted: None as
    source then means its local copy ($DIRACKIT_DATA, $DIRACKIT_DATA_CIFAR100) or its download, and a
    source with another class count is refused. Without either: ``$DIRACKIT_DATA``, else "cifar10".
    ``cache_dir`` defaults to ``$DIRACKIT_CACHE``, else ``~/.cache/dirackit``. ``*_per_class`` take a
    deterministic subset.
    """
    root = cache_root(cache_dir)
    remove_stale_temporaries(root, "cifar-*.npz", "index.json")
    src = locate(source, root, dataset)
    fetch(src, download)
    sha = _hash(src, root)
    path = cache_file(sha, root)
    arrays = _read(path, sha)
    if arrays is None:
        arrays = _decode(src)
        arrays["mean"], arrays["std"] = channel_stats(arrays["train_images"])
        _write(path, arrays, sha)
    tensors = (torch.from_numpy(arrays[f"{split}_{kind}"]) for split in SPLITS for kind in ("images", "labels"))
    data = CifarData(*tensors, classes=tuple(str(c) for c in arrays["classes"]), source=src.name, sha256=sha,
                     mean=tuple(float(m) for m in arrays["mean"]), std=tuple(float(s) for s in arrays["std"]))
    if dataset is not None and data.num_classes != DATASETS[dataset]:
        raise DataError(f"{src.name} has {data.num_classes} classes, not the {DATASETS[dataset]} of {dataset}: "
                        f"point at a {dataset} copy (export {DATA_VARIABLE[dataset]}=PATH) or set dataset to match")
    return data.subset(train_per_class, test_per_class)


def cache_file(sha256: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the decoded copy of the source with content hash ``sha256`` lives."""
    return cache_root(cache_dir) / f"cifar-{sha256}-v{FORMAT}.npz"


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of uint8 ``(N, H, W, 3)`` images on the 0..1 scale.

    From exact per-channel histograms, so every machine gets the same numbers; axis-0 sums over the
    interleaved channels ran 3x slower.
    """
    pixels = images.reshape(-1, 3)
    counts = np.zeros(3 * 256, np.int64)
    for chunk in np.array_split(pixels, max(1, len(pixels) >> 20)):
        counts += np.bincount((chunk + np.array([0, 256, 512], np.int16)).ravel(), minlength=3 * 256)
    counts, values = counts.reshape(3, 256), np.arange(256)
    mean = counts @ values / len(pixels)
    return mean / 255, np.sqrt(counts @ values**2 / len(pixels) - mean**2) / 255


def _decode(src: Source) -> dict[str, np.ndarray]:
    """All arrays of the cache file but the statistics, checked: both splits present, same classes."""
    if src.kind == "torchvision":
        train_x, train_y, test_x, test_y, classes = read_torchvision(src)
        _check_not_empty(src, len(train_x), len(test_x))
    else:
        keys = []

        def named():
            for split, cls, name, blob in read_images(src):
                keys.append((split, cls, name))
                yield name, blob

        images = decode_images(named())
        found = {split: {cls for s, cls, _ in keys if s == split} for split in SPLITS}
        _check_not_empty(src, len(found["train"]), len(found["test"]))
        if found["train"] != found["test"]:
            only = [f"only in {a}: {', '.join(sorted(found[a] - found[b]))}"
                    for a, b in (SPLITS, SPLITS[::-1]) if found[a] - found[b]]
            raise DataError(f"class folders differ between train and test in {src.path} ({'; '.join(only)}): "
                            f"both splits need the same class folders")
        classes = sorted(found["train"])
        label = {cls: i for i, cls in enumerate(classes)}
        order = sorted(range(len(keys)), key=keys.__getitem__)
        train_idx, test_idx = ([i for i in order if keys[i][0] == split] for split in SPLITS)
        train_x, test_x = images[train_idx], images[test_idx]
        train_y, test_y = (np.array([label[keys[i][1]] for i in idx], np.int64) for idx in (train_idx, test_idx))
    if len(classes) < 2:
        raise DataError(f"{src.path} has a single class ({', '.join(classes)}): a classifier needs at least two; "
                        f"add the other class folders")
    return dict(train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y,
                classes=np.array(classes, dtype=str))


def _check_not_empty(src: Source, *sizes: int) -> None:
    for split, size in zip(SPLITS, sizes):
        if not size:
            raise DataError(f"empty split: no {split} images in {src.path}; expected {split}/<class>/<image> "
                            f"files (optionally inside one top-level folder)")


def _read(path: Path, sha: str) -> dict[str, np.ndarray] | None:
    """The cache file's arrays, or None when it is missing or damaged in any way (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if str(arrays.pop("checksum")) != _checksum(arrays):
            raise ValueError("its arrays do not match their checksum")
        if str(arrays["sha256"]) != sha or int(arrays["format"]) != FORMAT:
            raise ValueError("written for another source or format")
        for split in SPLITS:
            x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or y.dtype != np.int64 or y.shape != x.shape[:1]:
                raise ValueError(f"unexpected {split} arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
            if not len(y) or y.min() < 0 or y.max() >= len(arrays["classes"]):
                raise ValueError(f"bad {split} labels")
        return arrays
    except Exception as e:  # a flipped bit can surface as almost any error of zipfile, numpy's header parser...
        reason = (str(e).splitlines() or [""])[0][:200]
        warnings.warn(f"cache file {path} is damaged ({type(e).__name__}: {reason}); decoding the source again",
                      stacklevel=3)
        return None


def _write(path: Path, arrays: dict[str, np.ndarray], sha: str) -> None:
    arrays = {**arrays, "sha256": np.array(sha), "format": np.array(FORMAT)}
    arrays["checksum"] = np.array(_checksum(arrays))
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as e:  # a read-only or full disk costs speed next time, not this run
        warnings.warn(f"could not write the data cache {path} ({e}); the next load decodes again", stacklevel=3)


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """CRC-32 of every array's name, dtype, shape and bytes: it finds damage on disk at 2-3 times the speed
    of sha256 (the cache is not a defence against someone who can write it)."""
    crc = 0
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        crc = zlib.crc32(f"{name} {a.dtype.str} {a.shape}\0".encode(), crc)
        crc = zlib.crc32(a.reshape(-1).view(np.uint8), crc)
    return f"crc32:{crc:08x}"


def _hash(src: Source, root: Path) -> str:
    """The content hash, via the fingerprint index when the source is unchanged since last time."""
    key, newest = fingerprint(src)
    index_path = root / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):  # damaged: start a new one
        index = {}
    if key in index:
        return str(index[key])
    sha = content_hash(src)
    if time.time_ns() - newest < SETTLED_NS:
        return sha
    index = dict(list(index.items())[-(INDEX_SIZE - 1):])
    index[key] = sha
    with suppress(OSError):
        atomic_write(index_path, lambda f: f.write(json.dumps(index, indent=0).encode()))
    return sha
