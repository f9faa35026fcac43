"""Hostile and careless data: damaged caches, sources replaced in place, archives and images that claim
more than a 32x32 image can hold, links, FIFOs and devices among the images. Each case is refused in
one line or handled correctly, and never hangs, crashes or serves wrong pixels."""
from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import tarfile
import time
import warnings
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from dirackit.data import DataError, cache, load_cifar
from dirackit.data.cache import cache_file
from dirackit.data.sources import MAX_IMAGE_BYTES


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    monkeypatch.setattr(cache, "SETTLED_NS", 0)  # index at once (a test's files are all seconds old)


@contextmanager
def within(seconds: int):
    """Fail instead of hanging: a read that blocks (a FIFO) is interrupted by SIGALRM."""
    def hung(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def same_pixels(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("train_images", "train_labels", "test_images", "test_labels")) and a.classes == b.classes


def test_every_flipped_bit_of_the_cache_is_caught_and_repaired(tmp_path, make_tree, make_archive):
    make_tree(tmp_path / "imgs", train=2, test=1)
    archive = make_archive(tmp_path / "imgs", tmp_path / "mini.tar")
    first = load_cifar(archive)
    path = cache_file(first.sha256)
    clean = path.read_bytes()
    # every byte of the zip and npy headers (where flips gave NotImplementedError, tokenize errors or
    # shifted pixels), and bytes spread over the data
    headers = [i for start in range(len(clean)) if clean.startswith((b"PK", b"\x93NUMPY"), start)
               for i in range(start, min(start + 80, len(clean)))]
    spots = sorted(set(headers[::29]) | set(range(0, len(clean), len(clean) // 16)))
    repaired = 0
    for at in spots:
        damaged = bytearray(clean)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = load_cifar(archive)
        assert same_pixels(again, first), at
        if caught:  # rebuilt, so the next load reads it without a word
            assert "is damaged" in str(caught[0].message), at
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert same_pixels(load_cifar(archive), first)
            repaired += 1
        path.write_bytes(clean)
    assert len(spots) > 40 and repaired > len(spots) // 2, (len(spots), repaired)  # some bytes are harmless


@pytest.mark.parametrize("how", ["copied over", "renamed onto"])
def test_an_archive_replaced_in_place_with_the_same_size_and_mtime_is_read_again(tmp_path, make_tree, make_archive,
                                                                                 how):
    make_tree(tmp_path / "a", train=2, test=1, fmt="bmp")  # uncompressed: the same size whatever the pixels
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "b" / "train" / "cat" / "000.bmp")
    archive, other = (make_archive(tmp_path / n, tmp_path / f"{n}.tar") for n in ("a", "b"))
    assert archive.stat().st_size == other.stat().st_size
    first = load_cifar(archive)
    times = archive.stat()
    if how == "copied over":
        shutil.copyfile(other, archive)
    else:
        os.replace(other, archive)
    os.utime(archive, ns=(times.st_atime_ns, times.st_mtime_ns))  # as if nothing had changed
    again = load_cifar(archive)
    assert again.sha256 != first.sha256 and same_pixels(again, load_cifar(tmp_path / "b"))
    assert again.train_images[0].float().mean(2).ne(85).sum() == 0  # the red image: (255 + 0 + 0) / 3


def test_stale_cache_temporaries_of_a_killed_fill_are_removed(tmp_path, make_tree, cache_dir):
    make_tree(tmp_path / "imgs", train=2, test=1)
    cache_dir.mkdir()
    stale = cache_dir / f".cifar-{'0' * 64}-v2.npz.0badf00d.tmp"
    stale.write_bytes(b"half a cache file")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    load_cifar(tmp_path / "imgs")
    assert not stale.exists()


def header_only_tar(name: str, size: int) -> bytes:
    """A tar whose member claims ``size`` bytes: what a bomb's stream starts with."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_an_archive_member_larger_than_any_image_is_refused_before_it_is_read(tmp_path, make_tree, make_archive,
                                                                              kind):
    make_tree(tmp_path / "imgs", train=2, test=1)
    path = tmp_path / f"bomb.{kind}"
    if kind == "zip":  # 64 MiB of zeros, deflated to about 64 KB
        make_archive(tmp_path / "imgs", path)
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("train/cat/bomb.png", bytes(64 << 20))
    else:  # the header of a 1 GiB member and nothing more: its data would never be reached
        import gzip
        path.write_bytes(gzip.compress(header_only_tar("train/cat/bomb.png", 1 << 30)))
    assert path.stat().st_size < 200_000
    with pytest.raises(DataError, match=rf"train/cat/bomb.png in .*bomb.{kind} is [\d,]+ bytes, more than a "
                                        rf"32x32 image file can be \(at most {MAX_IMAGE_BYTES:,} accepted\)"):
        load_cifar(path)


def png_claiming(width: int, height: int) -> bytes:
    """A 32x32 PNG whose header says ``width`` x ``height`` (the CRC fixed, so Pillow believes it)."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG")
    blob = bytearray(buffer.getvalue())
    ihdr = blob.index(b"IHDR")
    blob[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    blob[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(blob[ihdr:ihdr + 17])))
    return bytes(blob)


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warns above 89 M pixels, refuses above 179 M
def test_an_image_claiming_a_huge_size_is_refused_before_it_is_decoded(tmp_path, make_tree, side):
    make_tree(tmp_path / "imgs", train=2, test=1)
    (tmp_path / "imgs" / "train" / "cat" / "bomb.png").write_bytes(png_claiming(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(DataError, match=r"image .*bomb.png (is 10000x10000 RGB|claims a huge size).*32x32 RGB"):
            load_cifar(tmp_path / "imgs")


@pytest.mark.parametrize("what, message", [
    ("fifo", "is a FIFO, not an image file"),
    ("/dev/zero", "is a device, not an image file"),
    ("big", "is 2,097,152 bytes, more than a 32x32 image file can be"),
    ("broken link", "is a broken link"),
])
def test_a_folder_source_reads_regular_image_files_only(tmp_path, make_tree, what, message):
    make_tree(tmp_path / "imgs", train=2, test=1)
    odd = tmp_path / "imgs" / "train" / "dog" / "odd.png"
    if what == "fifo":
        os.mkfifo(odd)
    elif what == "big":
        with open(odd, "wb") as f:
            f.truncate(2 << 20)  # sparse: costs no disk
    else:
        odd.symlink_to(what if what == "/dev/zero" else tmp_path / "nowhere.png")
    with within(20), pytest.raises(DataError, match=message):
        load_cifar(tmp_path / "imgs")


def test_linked_class_and_split_folders_are_followed(tmp_path, make_tree):
    make_tree(tmp_path / "plain")
    expected = load_cifar(tmp_path / "plain")
    linked = tmp_path / "linked"
    shutil.copytree(tmp_path / "plain", linked)
    shutil.move(linked / "train" / "dog", tmp_path / "elsewhere-dog")
    (linked / "train" / "dog").symlink_to(tmp_path / "elsewhere-dog")  # a linked class folder
    shutil.move(linked / "test", tmp_path / "elsewhere-test")
    (linked / "test").symlink_to(tmp_path / "elsewhere-test")  # a linked split folder
    assert same_pixels(load_cifar(linked), expected)


def test_a_link_back_up_the_tree_cannot_trap_the_walk(tmp_path, make_tree):
    make_tree(tmp_path / "imgs", train=2, test=1)
    (tmp_path / "imgs" / "train" / "cat" / "loop").symlink_to(tmp_path / "imgs")
    with within(20), pytest.raises(DataError, match=r"unexpected folder train/cat/loop .*train/<class>/<image>"):
        load_cifar(tmp_path / "imgs")


def test_a_single_class_is_refused(tmp_path, make_tree):
    make_tree(tmp_path / "imgs", classes=("cat",), train=2, test=1)
    with pytest.raises(DataError, match=r"has a single class \(cat\): a classifier needs at least two"):
        load_cifar(tmp_path / "imgs")
