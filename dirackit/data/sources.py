"""Where CIFAR comes from: image folders and archives, torchvision-format folders, and the download.

This module finds a source, fingerprints and hashes it, and reads its raw bytes; turning image files
into pixels is ``decode.py``'s job. An image source holds ``train|test/<class>/<image>``, optionally
inside one top-level folder; classes are the sorted folder names (CIFAR-10's label order is
alphabetical, so the shared JPEG copy and torchvision agree).

Reading is bounded by what a 32x32 image can be: an image file or archive member larger than
``MAX_IMAGE_BYTES`` is refused before it is read, and a folder source reads regular files only
(a FIFO or a link to a device would block or never end). Symbolic links in a folder source are
followed, to files and to folders alike; the walk never goes deeper than the layout, so a link
loop cannot trap it.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import pickle
import shutil
import socket
import stat
import tarfile
import tempfile
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import DataError

SPLITS = ("train", "test")
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
# A 32x32 RGB image is 3,072 bytes of pixels; its file, with any format's headers and metadata, fits
# in far less than this. Anything larger is not a CIFAR image (e.g. a decompression bomb).
MAX_IMAGE_BYTES = 1 << 20
# The datasets a notebook's ``dataset`` parameter names: their class count, and the variable that
# points at a local copy of each (the download is the fallback).
DATASETS = {"cifar10": 10, "cifar100": 100}
DATA_VARIABLE = {"cifar10": "DIRACKIT_DATA", "cifar100": "DIRACKIT_DATA_CIFAR100"}


def how_to_get(dataset: str = "cifar10") -> str:
    """The fix an error message ends with: point the dataset's variable at a local copy (decoding
    it once is optional: the first load does it too)."""
    example = "cifar10-jpeg.tar.xz" if dataset == "cifar10" else f"{dataset}-archive-or-folder"
    return (f"export {DATA_VARIABLE.get(dataset, 'DIRACKIT_DATA')}=/path/to/{example} (then "
            f"python data_scripts/prepare_cifar.py --dataset {dataset} decodes it once into the cache)")


@dataclass(frozen=True)
class Torchvision:
    """The file layout of one dataset in torchvision's pickle format."""
    dataset: str  # class name in torchvision.datasets
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: str
    labels_key: str


TORCHVISION = {
    "cifar10": Torchvision("CIFAR10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                           ("test_batch",), "batches.meta", "label_names", "labels"),
    "cifar100": Torchvision("CIFAR100", "cifar-100-python", ("train",), ("test",), "meta", "fine_label_names",
                            "fine_labels"),
}


@dataclass(frozen=True)
class Source:
    """A located source: ``kind`` is "archive", "folder" or "torchvision" (then ``variant`` is its key)."""
    kind: str
    path: Path
    name: str  # what CifarData.source reports: the absolute path, or "torchvision:cifar10" for downloads
    variant: str = ""

    @property
    def downloadable(self) -> bool:
        return self.name.startswith("torchvision:")

    def files(self) -> list[tuple[str, Path]]:
        """(relative name, path) of every file this source reads, sorted: what the fingerprint covers."""
        if self.kind == "archive":
            return [(self.path.name, self.path)]
        if self.kind == "torchvision":
            layout = TORCHVISION[self.variant]
            return [(n, self.path / n) for n in sorted((*layout.train, *layout.test, layout.meta))]
        files = []
        for parent, dirs, names in os.walk(self.path, followlinks=True):
            rel = Path(parent).relative_to(self.path).parts
            dirs[:] = [d for d in dirs if not _hidden(d)]
            split_at = next((i for i, part in enumerate(rel[:2]) if part in SPLITS), None)
            if split_at is None and len(rel) >= 2:
                dirs[:] = []  # outside train|test: nothing there is read
            elif split_at is not None and len(rel) >= split_at + 2 and dirs:
                raise DataError(f"unexpected folder {'/'.join((*rel, dirs[0]))} in {self.name}: images must sit "
                                f"in {rel[split_at]}/<class>/<image>")
            files += [("/".join((*rel, n)), Path(parent, n)) for n in names if _classify((*rel, n), self.name)]
        return sorted(files)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$DIRACKIT_CACHE``, else ``~/.cache/dirackit``."""
    return Path(cache_dir or os.environ.get("DIRACKIT_CACHE") or "~/.cache/dirackit").expanduser().absolute()


def default_source(dataset: str = "cifar10") -> str:
    """Where ``dataset`` is read from when no source is given: the path in its variable
    ($DIRACKIT_DATA for CIFAR-10, $DIRACKIT_DATA_CIFAR100 for CIFAR-100), else its download."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    return os.environ.get(DATA_VARIABLE[dataset]) or dataset


def locate(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
           dataset: str | None = None) -> Source:
    """Find what ``source`` names without reading or downloading it (None: ``default_source(dataset)``).

    With ``dataset``, a download of the other CIFAR is refused here; a local source's class count is
    checked once it is read (``load_cifar``).
    """
    source = source or default_source(dataset or "cifar10")
    key = str(source).lower().removeprefix("torchvision:")
    if dataset is not None and key in TORCHVISION and key != dataset:
        raise DataError(f"source {source!r} is {key}, but dataset={dataset!r}: give a {dataset} source "
                        f"(or leave the source empty), or set dataset={key!r}")
    if key in TORCHVISION:
        return Source("torchvision", cache_root(cache_dir) / "torchvision" / TORCHVISION[key].folder,
                      f"torchvision:{key}", key)
    path = Path(source).expanduser().absolute()
    if not path.exists():
        raise DataError(f"data source not found: {path}; give an archive or folder with train|test/<class>/<image> "
                        f"(e.g. export DIRACKIT_DATA=/path/to/cifar10-jpeg.tar.xz), or download with python "
                        f"data_scripts/prepare_cifar.py --download cifar10")
    if path.is_file():
        if not path.name.lower().endswith(ARCHIVES):
            raise DataError(f"unsupported file type: {path} (supported archives: {', '.join(ARCHIVES)}; "
                            f"or give a folder with train|test/<class>/<image>)")
        return Source("archive", path, str(path))
    for key, layout in TORCHVISION.items():
        for folder in (path / layout.folder, path):
            if folder.is_dir() and (folder.name == layout.folder or (folder / layout.meta).is_file()):
                return Source("torchvision", folder, str(folder), key)
    return Source("folder", path, str(path))


def resolve_source(source: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
                   dataset: str | None = None) -> str:
    """What ``load_cifar(source, dataset=dataset)`` would read; raises DataError at once when it is not available."""
    src = locate(source, cache_dir, dataset)
    if src.downloadable and not _complete(src):
        _check_online(src)
    return src.name


def fetch(src: Source, download: bool = True) -> None:
    """Make sure a torchvision-format source is on disk, downloading it once into the cache if needed."""
    if src.kind != "torchvision" or _complete(src):
        return
    if not src.downloadable:
        missing = [n for n, p in src.files() if not p.is_file()]
        raise DataError(f"incomplete torchvision CIFAR folder {src.path}: missing {', '.join(missing)}; "
                        f"download it again or {how_to_get(src.variant)}")
    if not download:
        raise DataError(f"{src.variant} is not in {src.path.parent} and download=False; pass download=True "
                        f"when online, or {how_to_get(src.variant)}")
    _check_online(src)
    import torchvision.datasets
    from torchvision.datasets.utils import download_and_extract_archive
    cls = getattr(torchvision.datasets, TORCHVISION[src.variant].dataset)
    src.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=src.path.parent))  # same disk: os.replace is atomic
    try:
        download_and_extract_archive(cls.url, str(tmp), filename=cls.filename, md5=cls.tgz_md5)
        try:
            os.replace(tmp / src.path.name, src.path)
        except OSError:
            if not _complete(src):  # else another process finished the same download first
                raise
    except (OSError, RuntimeError, tarfile.TarError) as e:
        raise DataError(f"downloading {src.variant} failed ({_one_line(e)}); {how_to_get(src.variant)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fingerprint(src: Source) -> tuple[str, int]:
    """A cheap stand-in for the content hash, and the newest change time in ns. As git's index: paths,
    sizes, mtimes, inodes and ctimes of the files, so a file replaced in place (by a copy, or another file
    renamed onto it) with the same size and mtime is still noticed (nobody can set a ctime)."""
    h, newest = hashlib.sha256(f"{src.kind}:{src.path}".encode()), 0
    for rel, path in src.files():
        st = _checked_stat(src, path)
        h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}".encode())
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return h.hexdigest(), newest


def content_hash(src: Source) -> str:
    """sha256 of an archive's bytes; for folders, of every read file's relative name and bytes."""
    h = hashlib.sha256()
    for rel, path in src.files():
        if src.kind == "folder":  # small files, each read within bounds
            blob = _read_image_file(path)
            h.update(f"{rel}\0{len(blob)}\0".encode())
            h.update(blob)
        else:
            if src.kind == "torchvision":
                h.update(f"{rel}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def _read_image_file(path: Path) -> bytes:
    """The bytes of an image file of a folder source: a regular file of at most ``MAX_IMAGE_BYTES``
    (checked on the open file, so a FIFO is never waited on and /dev/zero never read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        _check_image_file(path, os.fstat(fd))
        blob = f.read(MAX_IMAGE_BYTES + 1)
    if len(blob) > MAX_IMAGE_BYTES:  # it grew since the check
        raise DataError(f"{path} {_too_large(len(blob))}: remove it from the data folder")
    return blob


def read_images(src: Source) -> Iterator[tuple[str, str, str, bytes]]:
    """Yield ``(split, class, name, file bytes)`` for every image of an archive or folder, in file order.

    Archives are streamed once front to back (a .tar.xz cannot seek cheaply), so decoding can start
    while the rest is still being decompressed.
    """
    prefixes = set()
    try:
        for parts, read in _members(src):
            if found := _classify(parts, src.name):
                prefixes.add(found[0])
                yield found[1], found[2], _display(src, parts), read()
    except (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, EOFError, OSError) as e:
        if src.kind != "archive":
            raise
        raise DataError(f"corrupt or truncated archive {src.path} ({_one_line(e)}); download or create it "
                        f"again") from None
    if len(prefixes) > 1:
        raise DataError(f"train/ and test/ found under several top-level folders of {src.path} "
                        f"({', '.join(sorted(p or '.' for p in prefixes))}): keep exactly one")


def read_torchvision(src: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Train images, train labels, test images, test labels (N, 32, 32, 3 uint8 / int64) and class names."""
    layout = TORCHVISION[src.variant]
    (names,) = _entries(src.path / layout.meta, layout.names_key)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    splits = []
    for files in (layout.train, layout.test):
        images, labels = [], []
        for name in files:
            path = src.path / name
            data, y = _entries(path, "data", layout.labels_key)
            data, y = np.asarray(data, dtype=np.uint8), np.asarray(y, dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or y.shape != (len(data),):
                raise DataError(f"{path} holds data of shape {data.shape} and labels of shape {y.shape}; expected "
                                f"(N, 3072) and (N,): download the dataset again")
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                bad = int(y.max() if y.max() >= len(classes) else y.min())
                raise DataError(f"labels out of range in {path}: found {bad} but {layout.meta} names "
                                f"{len(classes)} classes (0..{len(classes) - 1}); download the dataset again")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(y)
        splits += [np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)]
    return (*splits, classes)


def _members(src: Source) -> Iterator[tuple[tuple[str, ...], Callable[[], bytes]]]:
    """(path parts, read-bytes function) of each regular file, in storage order."""
    if src.kind == "folder":
        for rel, path in src.files():
            yield tuple(rel.split("/")), lambda path=path: _read_image_file(path)
    elif src.path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(src.path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield _parts(info.filename), _bounded(src, info.filename, info.file_size,
                                                          lambda info=info: zf.read(info))
    else:
        with _decompressed(src.path) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:  # one pass
            for member in tf:
                if member.isfile():
                    yield _parts(member.name), _bounded(src, member.name, member.size,
                                                        lambda member=member: tf.extractfile(member).read())
            # A tar ends with two zero blocks and tarfile stops at the first; a file cut between two
            # members would otherwise end the loop early without an error.
            if len(tf.fileobj.read(tarfile.BLOCKSIZE)) < tarfile.BLOCKSIZE:
                raise tarfile.ReadError("unexpected end of data")


def _decompressed(path: Path):
    """The archive's tar stream, decompressed as it is read. tarfile's own decompression ("r|*")
    decompresses each chunk whole: a chunk of a bomb's zeros becomes tens of MB that every later
    header read copies again (a 160 KB .tar.xz holding a 1 GiB member took 17 s to reach it);
    these readers decompress no more than is asked for."""
    with open(path, "rb") as f:
        magic = f.read(6)
    for prefix, opener in ((b"\x1f\x8b", gzip.open), (b"\xfd7zXZ\x00", lzma.open), (b"BZh", bz2.open)):
        if magic.startswith(prefix):
            return opener(path, "rb")
    return open(path, "rb")


def _bounded(src: Source, name: str, size: int, read: Callable[[], bytes]) -> Callable[[], bytes]:
    """``read`` of an archive member, refused before it starts when the member's stated size (which
    tarfile and zipfile read no further than) is more than an image file's."""
    def checked() -> bytes:
        if size > MAX_IMAGE_BYTES:
            raise DataError(f"{name} in {src.path} {_too_large(size)}: remove it from the archive")
        return read()
    return checked


def _checked_stat(src: Source, path: Path) -> os.stat_result:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path} in {src.name} is a broken link or vanished while being read: fix or remove "
                        f"it") from None
    if src.kind == "folder":
        _check_image_file(path, st)
    elif not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path} is not a regular file: replace it with the dataset's file")
    return st


def _check_image_file(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        what = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
            stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise DataError(f"{path} is {what}, not an image file: remove it from the data folder")
    if st.st_size > MAX_IMAGE_BYTES:
        raise DataError(f"{path} {_too_large(st.st_size)}: remove it from the data folder")


def _too_large(size: int) -> str:
    return f"is {size:,} bytes, more than a 32x32 image file can be (at most {MAX_IMAGE_BYTES:,} accepted)"


def _classify(parts: tuple[str, ...], where: str) -> tuple[str, str, str] | None:
    """``(top folder or "", split, class)`` for an image path; None for files outside the layout."""
    if any(_hidden(p) for p in parts):
        return None
    for depth in (0, 1):
        if len(parts) > depth + 1 and parts[depth] in SPLITS:
            split, rest = parts[depth], parts[depth + 1:]
            if len(rest) != 2:
                raise DataError(f"unexpected file {'/'.join(parts)} in {where}: images must sit in "
                                f"{split}/<class>/<image>")
            if not rest[1].lower().endswith(IMAGES):
                raise DataError(f"unsupported file type: {'/'.join(parts)} in {where} (images must be one of "
                                f"{', '.join(IMAGES)}); remove it")
            return parts[0] if depth else "", split, rest[0]
    return None


def _entries(path: Path, *keys: str) -> list:
    """Entries of a torchvision CIFAR pickle (a dict), read with the restricted unpickler below."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyUnpickler(f, encoding="latin1").load()
        obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
        key = next((k for k in keys if k not in obj), None)
        if key is None:
            return [obj[k] for k in keys]
    except FileNotFoundError:
        raise DataError(f"missing {path}: download the dataset again, or {how_to_get()}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, ImportError) as e:
        raise DataError(f"corrupt or truncated torchvision CIFAR file {path} ({_one_line(e)}); download it "
                        f"again") from None
    raise DataError(f"{path} has no {key!r} entry: not a torchvision CIFAR file; download it again")


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batch files hold (dicts, lists, numpy arrays): no arbitrary code."""
    SAFE = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype")} | {
        (f"numpy.{core}.{mod}", name) for core in ("core", "_core")
        for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.SAFE:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _complete(src: Source) -> bool:
    return all(p.is_file() for _, p in src.files())


def _check_online(src: Source) -> None:
    """Fail in seconds, not minutes, when the download host is unreachable (torchvision sets no timeout)."""
    import torchvision.datasets
    url = getattr(torchvision.datasets, TORCHVISION[src.variant].dataset).url
    host = urllib.parse.urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as e:
        raise DataError(f"cannot download {src.variant} ({host} unreachable: {_one_line(e)}); offline, point at "
                        f"a local copy: {how_to_get(src.variant)}") from None


def _parts(name: str) -> tuple[str, ...]:
    """Path parts of an archive member ("./train/cat/1.png" -> train, cat, 1.png); str ops, as pathlib is slow."""
    return tuple(p for p in name.split("/") if p not in ("", "."))


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _display(src: Source, parts: tuple[str, ...]) -> str:
    return str(src.path.joinpath(*parts)) if src.kind == "folder" else f"{'/'.join(parts)} (in {src.path})"


def _one_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]
