"""The decode-once cache: hits skip decoding and hashing, damage is repaired, concurrent fills are safe."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from dirackit.data import cache, load_cifar
from dirackit.data.cache import cache_file


def same(a, b) -> None:
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.classes, a.sha256, a.mean, a.std) == (b.classes, b.sha256, b.mean, b.std)


def forbid(monkeypatch, *names: str) -> None:
    """Make ``cache.<name>`` raise, proving a load never reached it."""
    for name in names:
        def fail(*args, name=name, **kwargs):
            raise AssertionError(f"{name} was called")
        monkeypatch.setattr(cache, name, fail)


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    """Index sources at once: the index skips files changed in the last few seconds, and a test's files
    are all that new (their ctime cannot be backdated)."""
    monkeypatch.setattr(cache, "SETTLED_NS", 0)


@pytest.fixture
def archive(tmp_path, make_tree, make_archive):
    make_tree(tmp_path / "imgs")
    return make_archive(tmp_path / "imgs", tmp_path / "mini.tar.xz")


def test_second_load_neither_decodes_nor_hashes(archive, cache_dir, monkeypatch):
    first = load_cifar(archive)
    assert cache_file(first.sha256).is_file() and cache_file(first.sha256).parent == cache_dir
    forbid(monkeypatch, "decode_images", "read_images", "read_torchvision", "content_hash")
    same(load_cifar(archive), first)


def test_cache_key_is_the_content(tmp_path, archive, make_torchvision, monkeypatch):
    first = load_cifar(archive)
    assert first.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    copy = shutil.copy(archive, tmp_path / "elsewhere.tar.xz")
    with monkeypatch.context() as patch:
        forbid(patch, "decode_images")
        second = load_cifar(copy)  # same bytes at another path: hashed once, not decoded
    same(second, first)
    assert second.source == str(copy)

    make_torchvision(tmp_path / "tv", "cifar10")
    tv = load_cifar(tmp_path / "tv")
    batch = tmp_path / "tv" / "cifar-10-batches-py" / "data_batch_1"
    blob, stat = bytearray(batch.read_bytes()), batch.stat()
    blob[len(blob) // 2] ^= 1  # one pixel changed within the same clock tick: same size, same mtime
    batch.write_bytes(bytes(blob))
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = load_cifar(tmp_path / "tv")
    assert changed.sha256 != tv.sha256 and (changed.train_images != tv.train_images).sum() == 1


def test_folder_change_is_noticed(tmp_path, make_tree):
    make_tree(tmp_path / "imgs")
    first = load_cifar(tmp_path / "imgs")
    target = tmp_path / "imgs" / "test" / "dog" / "001.png"
    shutil.copy(tmp_path / "imgs" / "test" / "dog" / "000.png", target)
    second = load_cifar(tmp_path / "imgs")
    assert second.sha256 != first.sha256
    assert torch.equal(second.test_images[2], second.test_images[3])  # dog's two test images now match


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_a_pixel_byte", "other_source", "empty"])
def test_damaged_cache_file_is_rebuilt(archive, damage):
    first = load_cifar(archive)
    path = cache_file(first.sha256)
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "garbage":
        blob = bytearray(os.urandom(len(blob)))
    elif damage == "flip_a_pixel_byte":
        start = blob.find(b"\x93NUMPY", blob.find(b"train_images.npy"))
        blob[start + 500] ^= 0xFF  # inside the image data: only the zip's CRC can tell
    elif damage == "other_source":  # a whole file, but another source's (e.g. renamed by hand)
        with np.load(path) as z:
            arrays = dict(z.items(), sha256=np.array("0" * 64))
        np.savez(path, **arrays)
        blob = bytearray(path.read_bytes())
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="damaged"):
        again = load_cifar(archive)
    same(again, first)
    with np.load(path) as z:
        assert str(z["sha256"]) == first.sha256 and np.array_equal(z["train_images"], first.train_images.numpy())


def test_damaged_index_is_replaced(archive, cache_dir):
    first = load_cifar(archive)
    (cache_dir / "index.json").write_text("{not json")
    same(load_cifar(archive), first)
    (cache_dir / "index.json").write_text("[1, 2]")
    same(load_cifar(archive), first)
    assert list(json.loads((cache_dir / "index.json").read_text()).values()) == [first.sha256]


def test_unwritable_cache_still_returns_the_data(archive, cache_dir, monkeypatch):
    def refuse(path, write):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache, "atomic_write", refuse)
    with pytest.warns(UserWarning, match="could not write the data cache"):
        data = load_cifar(archive)
    assert len(data.train_labels) == 12 and not list(cache_dir.glob("*.npz"))


def test_writes_leave_no_temporary_files(archive, cache_dir):
    sha = load_cifar(archive).sha256
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(["index.json", cache_file(sha).name])


def test_two_processes_fill_the_cache_at_once(tmp_path, make_tree, cache_dir):
    """Both processes decode and write; each rename is atomic, so both succeed and the file is whole."""
    make_tree(tmp_path / "imgs", train=40, test=10)
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import pathlib, sys, time
        from dirackit.data import cache, load_cifar
        cache.SETTLED_NS = 0  # so both also write the hash index
        print("ready", flush=True)
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.005)
        data = load_cifar({str(tmp_path / "imgs")!r})
        print(data.sha256, int(data.train_images.sum()))
    """)
    env = dict(os.environ, DIRACKIT_CACHE=str(cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()  # both are past `import torch`: the fills overlap
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1]
    sha, total = outputs[0]
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(["index.json", cache_file(sha).name])
    data = load_cifar(tmp_path / "imgs")
    assert data.sha256 == sha and int(data.train_images.sum()) == int(total)
