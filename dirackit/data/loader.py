"""``GpuLoader``: batches of a split that lives on the device as uint8, augmented there.

The airbench recipe without its globals: the whole split is copied to the device once (uint8 is 4x
smaller than float and faster to move than preprocessed floats), and each batch is one gather whose
indices already encode the shuffle, the padded random crop and the horizontal flip, followed by one
conversion to normalised float. No worker processes, no PIL, no per-image Python, and the same code
runs on CPU, CUDA and MPS.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch


class GpuLoader:
    """Yields ``(x, y)``: x float32 ``(B, 3, H, W)`` in channels_last memory, normalised; y int64 ``(B,)``.

    ``train=True``: a new shuffle every epoch, random crops of the image padded by ``crop_pad`` pixels
    ("reflect" or "zero", i.e. black before normalisation) and random horizontal flips; batches of
    epoch ``e`` are a pure function of ``(seed, e)`` on a given device, so resuming at an epoch
    reproduces the uninterrupted run. ``train=False``: the split in order, unchanged.
    A completed pass advances the epoch; ``set_epoch`` picks one explicitly.

    Sharding for data-parallel training: ``batch_size`` is the global batch, and the loader of
    ``rank`` (of ``world_size``) yields its contiguous part of every batch, images
    ``[B*rank//world_size, B*(rank+1)//world_size)`` of it. Every rank makes the epoch's random draws
    from the same ``(seed, epoch)``, so the parts are disjoint and together are exactly the batches
    of the single-process epoch. Training parts must be equal (DDP averages per-rank gradients), so
    a training batch must split evenly; evaluation parts may differ by one image.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, mean: Sequence[float],
                 std: Sequence[float], train: bool, device: str | torch.device = "cpu", crop_pad: int = 4,
                 pad_mode: str = "reflect", flip: bool = True, drop_last: bool | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if images.dtype != torch.uint8 or images.ndim != 4 or not images.shape[3] == len(mean) == len(std):
            raise ValueError(f"images must be uint8 (N, H, W, C) with C = len(mean) = len(std); got "
                             f"{images.dtype} {tuple(images.shape)} and {len(mean)}/{len(std)} statistics")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pad_mode not in ("reflect", "zero"):
            raise ValueError(f"pad_mode must be 'reflect' or 'zero', got {pad_mode!r}")
        if not 0 <= crop_pad < min(images.shape[1:3]):
            raise ValueError(f"crop_pad must be in [0, {min(images.shape[1:3])}), got {crop_pad}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.drop_last = train if drop_last is None else drop_last
        last = 0 if self.drop_last else len(labels) % batch_size
        if train and batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} does not split evenly across {world_size} processes: "
                             f"it is the global batch, so use a multiple of {world_size}")
        if train and last % world_size:
            raise ValueError(f"the last batch of {last} images does not split evenly across {world_size} "
                             f"processes: set drop_last=True")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.long)
        std255 = torch.tensor(std, dtype=torch.float32, device=self.device) * 255
        self._scale = 1 / std255  # x = pixel * scale + shift == (pixel / 255 - mean) / std
        self._shift = -torch.tensor(mean, dtype=torch.float32, device=self.device) * 255 / std255
        self.batch_size, self.train, self.crop_pad, self.pad_mode = batch_size, train, crop_pad, pad_mode
        self.flip = flip
        self.rank, self.world_size = rank, world_size
        self.seed, self.epoch = seed, 0

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        """Batches this rank yields per pass (an evaluation part can be empty on a rank, and is skipped)."""
        n, b = self.num_samples, self.batch_size
        sizes = [b] * (n // b) + ([n % b] if n % b and not self.drop_last else [])
        return sum(stop > start for start, stop in map(self._part, sizes))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict) -> None:
        if state["num_samples"] != self.num_samples:
            raise ValueError(f"loader state is for {state['num_samples']} samples, this split has "
                             f"{self.num_samples}: resume with the same data")
        self.seed, self.epoch = state["seed"], state["epoch"]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = self.num_samples, self.batch_size
        stop = n - n % b if self.drop_last else n
        if self.train:
            # Every random draw of the epoch is made here, up front, from one generator on the device;
            # every rank makes the same draws and takes its part of each batch.
            g = torch.Generator(self.device).manual_seed(_epoch_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=g, device=self.device)
            shifts = torch.randint(0, 2 * self.crop_pad + 1, (n, 2), generator=g, device=self.device)
            flips = torch.randint(0, 2, (n,), generator=g, device=self.device) == 1
            flips &= self.flip
            for i in self._slices(stop):
                yield self._normalise(self._augment(order[i], shifts[i], flips[i])), self.labels[order[i]]
        else:
            for i in self._slices(stop):
                yield self._normalise(self.images[i]), self.labels[i]
        self.epoch += 1

    def _part(self, size: int) -> tuple[int, int]:
        """This rank's ``[start, stop)`` within a batch of ``size`` images."""
        return size * self.rank // self.world_size, size * (self.rank + 1) // self.world_size

    def _slices(self, stop: int) -> Iterator[slice]:
        """This rank's part of each batch of positions ``[0, stop)``; empty parts are skipped."""
        for begin in range(0, stop, self.batch_size):
            start, end = self._part(min(self.batch_size, stop - begin))
            if end > start:
                yield slice(begin + start, begin + end)

    def _augment(self, idx: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, C)``: each image ``idx[k]`` padded, cropped at ``shifts[k]``, maybe flipped.

        Output pixel (y, x) of a padded crop at offset (dy, dx) is source pixel
        (y + dy - pad, x' + dx - pad) with x' = W - 1 - x when flipped; out-of-range rows and columns
        are mirrored ("reflect", as F.pad) or masked to black ("zero"). One gather, no padded copy.
        """
        n, h, w, c = self.images.shape
        rows = torch.arange(h, device=self.device) + shifts[:, :1] - self.crop_pad  # (B, H)
        cols = torch.arange(w, device=self.device).expand(len(idx), w)
        cols = torch.where(flips[:, None], w - 1 - cols, cols) + shifts[:, 1:] - self.crop_pad  # (B, W)
        if self.pad_mode == "reflect":
            rows, cols = _reflect(rows, h), _reflect(cols, w)
        else:
            inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
        pixel = (idx[:, None, None] * h + rows[:, :, None]) * w + cols[:, None, :]  # (B, H, W) flat index
        out = self.images.view(n * h * w, c)[pixel.flatten()].view(len(idx), h, w, c)
        return out if self.pad_mode == "reflect" else out.masked_fill_(~inside[..., None], 0)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        # NHWC -> NCHW by permute: the result's memory is already channels_last.
        return torch.addcmul(self._shift, images.float(), self._scale).permute(0, 3, 1, 2)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices in [-(size-1), 2(size-1)] into [0, size), excluding the edge (F.pad "reflect")."""
    i = i.abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed for (seed, epoch): nearby pairs give unrelated streams."""
    digest = hashlib.sha256(f"dirackit.GpuLoader:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
