"""Training recipes: one frozen dataclass, and each paper's CIFAR recipe as a named preset.

Change a preset with ``.replace(epochs=10)``; an unknown field raises. A step schedule shortened (or
lengthened) that way keeps its shape: its milestones scale with the run's length, so ``WRN.replace(
epochs=10)`` drops the lr at epochs 3, 6 and 8 as the paper's 200-epoch run does at 60, 120 and 160,
instead of never annealing. ``asdict()`` goes verbatim into a run's provenance and checkpoint (with the
milestones actually used), so a run can be repeated from its folder alone.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from .precision import PRECISIONS

__all__ = ["Recipe", "WRN", "DIRACNET", "PRERESNET", "RESNEXT", "DBB", "FAST", "PRESETS", "get_recipe",
           "lr_at", "scale_milestones", "saved_fields"]

# The WRN paper's drops (epochs 60, 120, 160 of 200) as fractions of a run: the default step schedule.
DEFAULT_MILESTONE_FRACTIONS = (0.3, 0.6, 0.8)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how a model is trained (the model and data are separate)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1                       # peak learning rate (per batch of `batch_size`)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay: Literal["all", "weights"] = "all"  # "weights": only conv/linear weights (tensors of dim > 1)
    schedule: Literal["step", "cosine", "onecycle"] = "step"
    # Epochs where "step" multiplies lr by gamma; None: 30%, 60% and 80% of the run (the WRN paper's).
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.2
    momentum_reset: bool = False          # "step": zero the momentum at each milestone (optimiser re-created)
    warmup: float = 0.15                  # "onecycle": fraction of the steps spent rising to lr
    crop_pad: int = 4                     # random crop from an image padded by this many pixels
    pad_mode: Literal["reflect", "zero"] = "reflect"
    flip: bool = True                     # random horizontal flip
    label_smoothing: float = 0.0
    test_flip: bool = False               # evaluate on each test image and its mirror, logits averaged
    drop_last: bool = True                # skip the last incomplete batch, as the Lua reference does
    seed: int = 0
    # "auto": bf16 autocast on CUDA of compute capability >= 8.0, fp16 autocast + GradScaler below,
    # fp32 on CPU and MPS (dirackit.precision); "bf16" | "fp16" | "fp32" force one on any device.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: bool = True            # NHWC memory format on CUDA
    compile: bool = False                 # torch.compile the model (CUDA; costs warm-up time)
    nan_check_every: int = 25             # steps between host-side checks of the on-device NaN flag

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.decay in ("all", "weights"), f"decay must be 'all' or 'weights', got {self.decay!r}"),
            (self.schedule in ("step", "cosine", "onecycle"),
             f"schedule must be step|cosine|onecycle, got {self.schedule!r}"),
            (self.pad_mode in ("reflect", "zero"), f"pad_mode must be reflect|zero, got {self.pad_mode!r}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 < self.warmup < 1, f"warmup must be in (0, 1), got {self.warmup}"),
            (self.nan_check_every >= 1, f"nan_check_every must be >= 1, got {self.nan_check_every}"),
            (self.precision in PRECISIONS, f"precision must be {'|'.join(PRECISIONS)}, got {self.precision!r}"),
            (0 <= self.seed < 2 ** 63, f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.milestones is None:
            default = [math.floor(f * self.epochs + 0.5) for f in DEFAULT_MILESTONE_FRACTIONS]
            object.__setattr__(self, "milestones", tuple(m for m in default if 1 <= m < self.epochs))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        outside = [m for m in self.milestones if not 1 <= m < self.epochs]
        if self.schedule == "step" and outside:
            raise ValueError(f"milestones {outside} lie outside a {self.epochs}-epoch run (1 to {self.epochs - 1}): "
                             f"the lr would never drop there; give milestones inside the run or leave them out "
                             f"to scale the default")

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed; an unknown field name raises TypeError.

        A new ``epochs`` without new ``milestones`` scales the milestones to the new length
        (``scale_milestones``), so a shortened step schedule still anneals."""
        if "epochs" in changes and "milestones" not in changes:
            changes["milestones"] = scale_milestones(self.milestones, self.epochs, changes["epochs"])
        return dataclasses.replace(self, **changes)

    def asdict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls, saved: dict) -> "Recipe":
        """The recipe a run folder or checkpoint saved (``saved_fields``)."""
        return cls(**saved_fields(saved))


def saved_fields(saved: dict) -> dict:
    """A saved recipe's fields as ``Recipe`` names them today, so older runs load and resume: a field
    added since reads as its default, and ``bf16`` (before ``precision``) becomes ``precision``. True
    meant bf16 autocast on every CUDA device and fp32 elsewhere, and becomes "auto": the same on CPUs
    and on GPUs of compute capability >= 8.0 (a run begun on an older GPU continues in fp16)."""
    fields = dict(saved)
    if "bf16" in fields:
        bf16 = fields.pop("bf16")
        fields.setdefault("precision", "auto" if bf16 else "fp32")
    return {**{f.name: f.default for f in dataclasses.fields(Recipe)}, **fields}


def scale_milestones(milestones: tuple[int, ...], epochs: int, new_epochs: int) -> tuple[int, ...]:
    """``milestones`` of an ``epochs``-long run placed at the same fractions of a ``new_epochs``-long
    one (rounded half up). Drops that land past the run's last epoch are left out; two drops that land
    on one epoch both apply there, so the run still ends at the paper's final lr."""
    if not isinstance(new_epochs, int) or new_epochs < 1:
        return milestones  # Recipe's own check then reports the bad epochs
    scaled = (max(1, math.floor(m * new_epochs / epochs + 0.5)) for m in milestones)
    return tuple(m for m in scaled if m < new_epochs)


def lr_at(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based): a pure function, so resume needs no state."""
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "step":
        epoch = step // steps_per_epoch
        return recipe.lr * recipe.gamma ** sum(epoch >= m for m in recipe.milestones)
    if recipe.schedule == "cosine":
        return 0.5 * recipe.lr * (1 + math.cos(math.pi * step / total))
    rise = max(1, round(recipe.warmup * total))  # onecycle: linear up, then linear down to 0
    if step < rise:
        return recipe.lr * (step + 1) / rise
    return recipe.lr * max(0.0, (total - step) / max(1, total - rise))


# WRN paper code (szagoruyko/wide-residual-networks, scripts/train_cifar.sh + train.lua):
# Nesterov SGD, lr 0.1 x0.2 at 60/120/160 of 200, wd 5e-4 on all parameters, reflect-pad crops; the
# optimiser (so its momentum) is re-created at every lr drop.
WRN = Recipe(momentum_reset=True)
# DiracNets v2 train.py: as WRN (momentum reset included) but no Nesterov and weight decay only on
# tensors of dim > 1.
DIRACNET = Recipe(nesterov=False, decay="weights", momentum_reset=True)
# He et al. 2016 (ResNet / pre-act ResNet on CIFAR): lr 0.1 /10 at 32k and 48k of 64k iterations
# of batch 128 (epochs 82 and 123 of 164), wd 1e-4, zero-padded crops.
PRERESNET = Recipe(epochs=164, milestones=(82, 123), gamma=0.1, weight_decay=1e-4, nesterov=False,
                   pad_mode="zero")
# ResNeXt-29 on CIFAR (Xie et al. 2017): 300 epochs, lr 0.1 /10 at 150 and 225, wd 5e-4, zero pad.
RESNEXT = Recipe(epochs=300, milestones=(150, 225), gamma=0.1, nesterov=False, pad_mode="zero")
# DBB paper via ACNet's CIFAR pipeline: cosine from 0.1, wd 1e-4, zero pad (epochs: ACNet uses 400).
DBB = Recipe(epochs=400, schedule="cosine", weight_decay=1e-4, nesterov=False, pad_mode="zero")
# Short runs (quick notebooks, time-to-accuracy): one-cycle, larger batches, label smoothing.
FAST = Recipe(epochs=15, batch_size=512, lr=0.4, schedule="onecycle", weight_decay=5e-4,
              label_smoothing=0.1)

PRESETS: dict[str, Recipe] = {"wrn": WRN, "diracnet": DIRACNET, "preresnet": PRERESNET,
                              "resnext": RESNEXT, "dbb": DBB, "fast": FAST}


def get_recipe(name: str) -> Recipe:
    """A preset by name (``wrn``, ``diracnet``, ``preresnet``, ``resnext``, ``dbb``, ``fast``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(PRESETS)}") from None
