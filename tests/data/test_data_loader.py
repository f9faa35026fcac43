"""GpuLoader: exact crops/flips (checked against F.pad), normalisation, layout, determinism, resume."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dirackit.data import GpuLoader

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def loader(n: int = 10, **kwargs) -> GpuLoader:
    """Labels are the image indices, so a batch says which images it holds."""
    options = dict(batch_size=4, mean=MEAN, std=STD, train=True) | kwargs
    return GpuLoader(images(n), torch.arange(n), **options)


def epoch(loader: GpuLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Back to uint8 NHWC pixels: exact, since normalising is affine and pixels are integers."""
    mean, std = torch.tensor(MEAN, device=x.device), torch.tensor(STD, device=x.device)
    pixels = (x.permute(0, 2, 3, 1) * std + mean) * 255
    assert (pixels - pixels.round()).abs().max() < 1e-3
    return pixels.round().to(torch.uint8)


def candidates(image: torch.Tensor, pad: int, mode: str) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every (dy, dx, flipped) crop of the padded image, built the reference way: F.pad, slice, flip."""
    chw = image.permute(2, 0, 1)[None].float()
    padded = F.pad(chw, (pad,) * 4, mode="reflect" if mode == "reflect" else "constant", value=0)[0]
    out = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            for flipped in (False, True):
                out[dy, dx, flipped] = (crop.flip(-1) if flipped else crop).permute(1, 2, 0).to(torch.uint8)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pad_mode", ["reflect", "zero"])
def test_crops_are_shifted_windows_of_the_padded_image(pad_mode, device):
    """Every output is exactly one crop (+ flip) of its padded source, and many different ones occur."""
    source = images(6)
    refs = [candidates(image, 4, pad_mode) for image in source]
    data = loader(6, batch_size=3, pad_mode=pad_mode, device=device)
    seen = set()
    for _ in range(8):
        for x, y in data:
            for pixels, i in zip(denormalise(x).cpu(), y.tolist()):
                matches = [k for k, crop in refs[i].items() if torch.equal(crop, pixels)]
                assert len(matches) == 1, f"sample {i} matches {matches}"
                seen.add(matches[0])
    assert len({(dy, dx) for dy, dx, _ in seen}) > 15 and {f for *_, f in seen} == {False, True}
    assert {dy for dy, *_ in seen} >= {0, 8} or {dx for _, dx, _ in seen} >= {0, 8}  # the extremes occur


def test_zero_padding_is_black_and_reflect_has_no_black_border():
    white = torch.full((4, 32, 32, 3), 255, dtype=torch.uint8)
    for mode, has_black in (("zero", True), ("reflect", False)):
        data = GpuLoader(white, torch.arange(4), batch_size=4, mean=MEAN, std=STD, train=True, pad_mode=mode)
        pixels = torch.cat([denormalise(x) for _ in range(5) for x, _ in data])
        assert bool((pixels == 0).any()) == has_black and set(pixels.unique().tolist()) <= {0, 255}


def test_flip_only_and_shuffle_only():
    source = images(8)
    flips = set()
    for x, y in loader(8, batch_size=8, crop_pad=0):
        for pixels, i in zip(denormalise(x), y.tolist()):
            flipped = torch.equal(pixels, source[i].flip(1))
            assert flipped or torch.equal(pixels, source[i])
            flips.add(flipped)
    assert flips == {False, True}
    x, y = next(iter(loader(8, batch_size=8, crop_pad=0, flip=False)))
    assert torch.equal(denormalise(x), source[y]) and not torch.equal(y, torch.arange(8))


@pytest.mark.parametrize("device", DEVICES)
def test_eval_batches_are_normalised_in_order_and_channels_last(device):
    source = images(10)
    batches = epoch(loader(10, train=False, device=device))
    assert [len(y) for _, y in batches] == [4, 4, 2]  # eval keeps the last partial batch
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]).cpu(), torch.arange(10))
    want = (source.permute(0, 3, 1, 2).double() / 255 - torch.tensor(MEAN)[:, None, None].double()) \
        / torch.tensor(STD)[:, None, None].double()
    torch.testing.assert_close(x.cpu().double(), want, rtol=0, atol=1e-5)
    for x, y in batches:
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        assert x.device.type == y.device.type == device


def test_every_sample_once_per_epoch_and_drop_last():
    full = loader(10, drop_last=False)
    assert len(full) == 3
    labels = torch.cat([y for _, y in full])
    assert sorted(labels.tolist()) == list(range(10))

    dropped = loader(10)  # train drops the last partial batch by default
    assert len(dropped) == 2
    seen = torch.cat([y for _, y in epoch(dropped)])
    assert len(seen) == 8 == len(set(seen.tolist()))
    assert len(loader(3, batch_size=4)) == 0 and epoch(loader(3, batch_size=4)) == []


def test_epochs_are_a_pure_function_of_seed_and_epoch():
    a, b = loader(seed=1), loader(seed=1)
    first = epoch(a)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first, epoch(b)))
    second = epoch(a)  # a completed pass moves to the next epoch
    assert a.epoch == 2 and not torch.equal(first[0][1], second[0][1])
    c = loader(seed=1)
    c.set_epoch(1)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(second, epoch(c)))
    assert not torch.equal(epoch(loader(seed=2))[0][0], first[0][0])


def test_state_dict_resumes_exactly():
    a = loader(seed=3)
    epoch(a)
    epoch(a)
    state = a.state_dict()
    assert state == {"seed": 3, "epoch": 2, "num_samples": 10}
    b = loader(seed=0)
    b.load_state_dict(state)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(epoch(a), epoch(b)))
    with pytest.raises(ValueError, match="same data"):
        loader(12).load_state_dict(state)


def test_interrupted_epoch_does_not_advance():
    a = loader()
    next(iter(a))
    assert a.epoch == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size"),
    (dict(pad_mode="edge"), "pad_mode"),
    (dict(crop_pad=32), "crop_pad"),
    (dict(mean=(0.5, 0.5)), "uint8 \\(N, H, W, C\\)"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loader(**kwargs)
    with pytest.raises(ValueError, match="labels"):
        GpuLoader(images(4), torch.arange(3), batch_size=2, mean=MEAN, std=STD, train=True)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_parts_that_make_up_the_single_process_batches(world_size):
    """Data-parallel sharding: in rank order the parts are the single-process batches, pixel for pixel."""
    def two_epochs(**kwargs):
        data = loader(14, batch_size=6, seed=5, **kwargs)
        return epoch(data) + epoch(data)
    whole = two_epochs()
    parts = [two_epochs(rank=r, world_size=world_size) for r in range(world_size)]
    assert len(whole) == 4 and all(len(p) == len(whole) for p in parts)
    for step, (x, y) in enumerate(whole):
        assert [len(p[step][1]) for p in parts] == [6 // world_size] * world_size
        assert torch.equal(torch.cat([p[step][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[step][1] for p in parts]), y)
        assert len(set(y.tolist())) == 6  # labels are image indices: the parts share no image


def test_eval_parts_cover_the_split_once_and_may_be_uneven():
    parts = [loader(10, batch_size=4, train=False, rank=r, world_size=3) for r in range(3)]
    batches = [epoch(p) for p in parts]
    assert [len(p) for p in parts] == [len(b) for b in batches] == [2, 3, 3]  # rank 0's third part is empty
    assert sorted(torch.cat([y for b in batches for _, y in b]).tolist()) == list(range(10))


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=6, world_size=4), "batch_size 6 does not split evenly across 4 processes"),
    (dict(batch_size=6, world_size=3, drop_last=False), "last batch of 2 images .* drop_last=True"),
    (dict(rank=2, world_size=2), "rank"),
])
def test_shards_that_cannot_be_equal_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loader(14, **kwargs)
