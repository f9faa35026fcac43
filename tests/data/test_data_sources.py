"""Every kind of source decodes to the same arrays, and every data problem is one clear DataError."""
from __future__ import annotations

import io
import pickle
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dirackit.data import CifarData, DataError, decode, load_cifar, resolve_source, sources


def assert_matches(data: CifarData, expected: dict, classes=("cat", "dog", "frog")):
    """Classes sorted, labels per class in file order, pixels exact (PNG is lossless)."""
    assert data.classes == classes
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        want = np.concatenate([expected[split, c] for c in classes])
        want_labels = np.concatenate([[i] * len(expected[split, c]) for i, c in enumerate(classes)])
        np.testing.assert_array_equal(images.numpy(), want)
        np.testing.assert_array_equal(labels.numpy(), want_labels)


def one_line_error(excinfo, *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_image_folder(tmp_path, make_tree):
    expected = make_tree(tmp_path / "imgs")
    data = load_cifar(tmp_path / "imgs")
    assert_matches(data, expected)
    assert data.source == str(tmp_path / "imgs") and len(data.sha256) == 64
    pixels = np.concatenate([expected["train", c] for c in ("cat", "dog", "frog")]).reshape(-1, 3) / 255
    np.testing.assert_allclose(data.mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(data.std, pixels.std(0), rtol=1e-9)


def test_class_order_is_sorted_folder_names_not_creation_order(tmp_path, make_tree):
    expected = make_tree(tmp_path / "imgs", classes=("zebra", "ant", "Moth"))
    data = load_cifar(tmp_path / "imgs")
    assert_matches(data, expected, classes=("Moth", "ant", "zebra"))


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.xz", ".zip"])
@pytest.mark.parametrize("top", [None, "cifar-mini", "."])
def test_archives_decode_like_the_folder(tmp_path, make_tree, make_archive, suffix, top):
    expected = make_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "README.txt").write_text("files outside train/ and test/ are ignored")
    archive = make_archive(tmp_path / "imgs", tmp_path / f"mini{suffix}", top=top)
    data = load_cifar(archive)
    assert_matches(data, expected)
    assert data.source == str(archive)


def test_jpeg_images(tmp_path, make_tree):
    make_tree(tmp_path / "imgs", fmt="jpg")
    data = load_cifar(tmp_path / "imgs")
    assert data.train_images.shape == (12, 32, 32, 3) and data.test_images.shape == (6, 32, 32, 3)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_torchvision_format(tmp_path, make_torchvision, variant):
    train_x, train_y, test_x, test_y = make_torchvision(tmp_path / "tv", variant)
    for source in (tmp_path / "tv", tmp_path / "tv" / sources.TORCHVISION[variant].folder):
        data = load_cifar(source)
        np.testing.assert_array_equal(data.train_images.numpy(), train_x)  # CHW rows -> HWC pixels
        np.testing.assert_array_equal(data.train_labels.numpy(), train_y)
        np.testing.assert_array_equal(data.test_images.numpy(), test_x)
        np.testing.assert_array_equal(data.test_labels.numpy(), test_y)
        assert data.num_classes == (10 if variant == "cifar10" else 100) and data.classes[1] == "class001"


def test_download_once_into_the_cache(cache_dir, make_torchvision, monkeypatch):
    """A mocked torchvision download: extracted into <cache>/torchvision, temp folder removed, not repeated."""
    calls = []

    def fake_download(url, root, filename, md5):
        calls.append(url)
        make_torchvision(Path(root), "cifar100")

    monkeypatch.setattr(sources, "_check_online", lambda src: None)
    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    data = load_cifar("cifar100")
    assert data.source == "torchvision:cifar100" and data.num_classes == 100
    assert sorted(p.name for p in (cache_dir / "torchvision").iterdir()) == ["cifar-100-python"]
    assert load_cifar("cifar100").sha256 == data.sha256 and len(calls) == 1


def test_download_failure_is_one_clear_line(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(sources, "_check_online", lambda src: None)
    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DataError) as e:
        load_cifar("cifar10")
    one_line_error(e, "downloading cifar10 failed", "DIRACKIT_DATA=", "prepare_cifar.py --dataset cifar10")


def test_offline_default_source_fails_fast_with_how_to_fix(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(sources.socket, "create_connection", unreachable)
    for call in (lambda: load_cifar(), lambda: resolve_source(), lambda: load_cifar(dataset="cifar10")):
        with pytest.raises(DataError) as e:
            call()
        one_line_error(e, "cannot download cifar10", "export DIRACKIT_DATA=/path/to/cifar10-jpeg.tar.xz",
                       "prepare_cifar.py --dataset cifar10")
    for call in (lambda: resolve_source("cifar100"), lambda: load_cifar(dataset="cifar100")):
        with pytest.raises(DataError) as e:
            call()
        one_line_error(e, "cannot download cifar100", "export DIRACKIT_DATA_CIFAR100=", "prepare_cifar.py --dataset cifar100")
    with pytest.raises(DataError) as e:
        load_cifar("cifar10", download=False)
    one_line_error(e, "download=False", "DIRACKIT_DATA")


def test_dataset_reads_its_own_variable(tmp_path, make_tree, make_torchvision, monkeypatch):
    """dataset= picks $DIRACKIT_DATA for CIFAR-10 and $DIRACKIT_DATA_CIFAR100 for CIFAR-100."""
    make_torchvision(tmp_path / "c100", "cifar100")
    make_torchvision(tmp_path / "c10", "cifar10")
    monkeypatch.setenv("DIRACKIT_DATA", str(tmp_path / "c10"))
    monkeypatch.setenv("DIRACKIT_DATA_CIFAR100", str(tmp_path / "c100"))
    assert load_cifar(dataset="cifar100").num_classes == 100
    assert load_cifar(dataset="cifar10").num_classes == 10
    assert load_cifar().num_classes == 10  # no dataset: $DIRACKIT_DATA, as before
    assert resolve_source(dataset="cifar100") == str(tmp_path / "c100" / "cifar-100-python")


def test_dataset_refuses_a_source_of_the_other_cifar(tmp_path, make_tree, make_torchvision, monkeypatch):
    make_torchvision(tmp_path / "c100", "cifar100")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "c100", dataset="cifar10")
    one_line_error(e, "has 100 classes, not the 10 of cifar10", "export DIRACKIT_DATA=")
    make_tree(tmp_path / "three")  # three classes: neither CIFAR
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "three", dataset="cifar100")
    one_line_error(e, "has 3 classes, not the 100 of cifar100", "DIRACKIT_DATA_CIFAR100=")
    monkeypatch.setattr(sources, "_check_online", None)  # refused before any download is tried
    with pytest.raises(DataError) as e:
        load_cifar("cifar100", dataset="cifar10")
    one_line_error(e, "'cifar100' is cifar100, but dataset='cifar10'")
    with pytest.raises(DataError) as e:
        load_cifar(dataset="svhn")
    one_line_error(e, "unknown dataset 'svhn'", "cifar10, cifar100")


def test_resolve_source_reads_nothing(tmp_path, cache_dir, make_tree, make_archive, monkeypatch):
    make_tree(tmp_path / "imgs")
    archive = make_archive(tmp_path / "imgs", tmp_path / "mini.tar.gz")
    monkeypatch.setattr(sources, "_members", None)  # reading any file would fail
    monkeypatch.setattr(sources, "content_hash", None)
    assert resolve_source(archive) == str(archive)
    monkeypatch.setenv("DIRACKIT_DATA", str(tmp_path / "imgs"))
    assert resolve_source() == str(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    assert resolve_source("mini.tar.gz") == str(archive)  # relative paths become absolute
    assert not cache_dir.exists()


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere.tar.xz"
    for call in (lambda: load_cifar(missing), lambda: resolve_source(missing)):
        with pytest.raises(DataError) as e:
            call()
        one_line_error(e, str(missing), "not found", "DIRACKIT_DATA=", "prepare_cifar.py --download cifar10")


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.xz", ".zip"])
def test_truncated_archive(tmp_path, make_tree, make_archive, suffix):
    make_tree(tmp_path / "imgs", train=20, test=20)
    archive = make_archive(tmp_path / "imgs", tmp_path / f"mini{suffix}")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        load_cifar(archive)
    one_line_error(e, "corrupt or truncated archive", str(archive))


def test_tar_cut_between_two_members(tmp_path, make_tree, make_archive):
    """tarfile ends quietly at a missing header; the missing end-of-archive blocks give the cut away."""
    make_tree(tmp_path / "imgs")
    archive = make_archive(tmp_path / "imgs", tmp_path / "mini.tar")
    with tarfile.open(archive) as tf:
        cut = tf.getmembers()[-2].offset  # train/frog/002.png's header: every class keeps some images
    archive.write_bytes(archive.read_bytes()[:cut])
    with pytest.raises(DataError) as e:
        load_cifar(archive)
    one_line_error(e, "corrupt or truncated archive", "unexpected end of data")


def test_corrupt_image(tmp_path, make_tree, make_archive):
    make_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "dog" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "imgs")
    one_line_error(e, "cannot decode image", "train/dog/001.png")
    archive = make_archive(tmp_path / "imgs", tmp_path / "mini.zip")
    with pytest.raises(DataError) as e:
        load_cifar(archive)
    one_line_error(e, "train/dog/001.png (in ", "mini.zip")


@pytest.mark.parametrize("size, mode", [((28, 28), "RGB"), ((32, 32), "L"), ((32, 32), "RGBA"), ((64, 32), "RGB")])
def test_image_not_32x32_rgb(tmp_path, make_tree, size, mode):
    make_tree(tmp_path / "imgs")
    Image.new(mode, size).save(tmp_path / "imgs" / "test" / "frog" / "odd.png")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "imgs")
    one_line_error(e, "test/frog/odd.png", f"{size[0]}x{size[1]} {mode}", "32x32 RGB")


def test_class_folders_differ(tmp_path, make_tree):
    make_tree(tmp_path / "imgs")
    shutil.rmtree(tmp_path / "imgs" / "test" / "dog")
    make_tree(tmp_path / "imgs" / "extra", classes=("bird",))
    shutil.move(tmp_path / "imgs" / "extra" / "test" / "bird", tmp_path / "imgs" / "test" / "bird")
    shutil.rmtree(tmp_path / "imgs" / "extra")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "imgs")
    one_line_error(e, "class folders differ", "only in train: dog", "only in test: bird")


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_split(tmp_path, make_tree, split):
    make_tree(tmp_path / "imgs")
    shutil.rmtree(tmp_path / "imgs" / split)
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "imgs")
    one_line_error(e, f"empty split: no {split} images")


def test_no_images_at_all(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "empty")
    one_line_error(e, "empty split")


@pytest.mark.parametrize("variant, bad", [("cifar100", 100), ("cifar10", 10), ("cifar10", -1)])
def test_labels_out_of_range(tmp_path, make_torchvision, variant, bad):
    make_torchvision(tmp_path / "tv", variant, bad_label=bad)
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "tv")
    one_line_error(e, "labels out of range", f"found {bad}")


def test_torchvision_files_missing_or_truncated(tmp_path, make_torchvision):
    make_torchvision(tmp_path / "tv", "cifar10")
    folder = tmp_path / "tv" / "cifar-10-batches-py"
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "tv")
    one_line_error(e, "corrupt or truncated", "data_batch_3")
    batch.unlink()
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "tv")
    one_line_error(e, "incomplete", "data_batch_3")


def test_pickles_cannot_run_code(tmp_path, make_torchvision):
    """Only numpy arrays and plain containers are unpickled: a crafted batch file cannot run a command."""
    make_torchvision(tmp_path / "tv", "cifar100")

    class Exploit:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    (tmp_path / "tv" / "cifar-100-python" / "train").write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "tv")
    one_line_error(e, "refusing to load shutil.rmtree")
    assert (tmp_path / "victim").is_dir()


def test_unsupported_file_type(tmp_path, make_tree):
    (tmp_path / "cifar.rar").write_bytes(b"Rar!")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "cifar.rar")
    one_line_error(e, "unsupported file type", "cifar.rar", ".tar.xz")
    make_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "cat" / "labels.csv").write_text("0,1")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "imgs")
    one_line_error(e, "unsupported file type", "train/cat/labels.csv")


def test_bad_layouts(tmp_path, make_tree, make_archive):
    make_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "loose.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path / "imgs")
    one_line_error(e, "train/loose.png", "train/<class>/<image>")

    make_tree(tmp_path / "two" / "a")
    make_tree(tmp_path / "two" / "b")
    archive = make_archive(tmp_path / "two", tmp_path / "two.tar")
    with pytest.raises(DataError) as e:
        load_cifar(archive)
    one_line_error(e, "several top-level folders", "a, b")


def test_hidden_files_are_ignored(tmp_path, make_tree, make_archive):
    expected = make_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "imgs" / "__MACOSX" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "__MACOSX" / "train" / "cat" / "._000.png").write_bytes(b"junk")
    assert_matches(load_cifar(make_archive(tmp_path / "imgs", tmp_path / "mac.zip")), expected)


def test_decode_pool_keeps_order_and_reports_the_bad_file(monkeypatch, tmp_path):
    """The multi-process path (used for real archives) gives the same array as decoding in-process."""
    def png(pixels) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="png")
        return buffer.getvalue()

    images = np.random.default_rng(0).integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
    items = [(f"img{i}", png(x)) for i, x in enumerate(images)]
    monkeypatch.setattr(decode, "CHUNK", 5)
    np.testing.assert_array_equal(decode.decode_images(iter(items), workers=2), images)
    items[23] = ("img23", png(images[0, :16]))
    with pytest.raises(DataError, match="img23 is 32x16 RGB"):
        decode.decode_images(iter(items), workers=2)
