"""Training: ``fit(model, data, recipe, out=DIR)``; its command line is ``python -m dirackit.train``.

``fit`` reads as its phases: start or resume, then per epoch train, evaluate, save. Models plug in
through the optional hooks of ``dirackit.hooks`` (``no_weight_decay``, ``loss``, ``log_state``,
``build_spec``); none of them is required.

A run folder holds ``config.json`` (provenance), ``log.jsonl`` (one row per epoch) and
``checkpoint.pt`` (rewritten atomically every epoch, the one before kept as
``checkpoint.previous.pt``). ``resume=True`` continues from the checkpoint and cuts the log back to
it, so a killed and resumed run logs what an uninterrupted one logs. ``rundir`` decides who may
write a folder: one run at a time, a new run only where no run is, a resumed one only as it began.

``recipe.precision`` ("auto": bf16 on CUDA of compute capability >= 8.0, fp16 with a gradient
scaler below, fp32 on CPU and MPS; ``dirackit.precision``) is printed when training starts and
recorded in ``config.json`` with the device's compute capability; the scaler's state is checkpointed.

Under ``torchrun --nproc_per_node=N`` the same ``fit`` trains data-parallel on N processes, with
``recipe.batch_size`` as the global batch; ``distributed`` says how the ranks share the work.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import hooks
from ..checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..data import CifarData, DataError, GpuLoader
from ..metrics import count_params
from ..precision import (autocast_factory, backward_and_step, compute_capability, describe_precision, grad_scaler,
                         resolve_precision)
from ..recipes import Recipe, WRN, lr_at
from ..rundir import check_same_run, claim, load_weights
from ..runlog import CHECKPOINT, RunLog, test_set_digest
from ..version import __version__
from .distributed import World, all_reduce, barrier, data_parallel, gather_objects, init_from_env, on_main, \
    sync_buffers

__all__ = ["fit", "evaluate", "param_groups", "sgd", "objective", "autocast_for", "train_loader", "resolve_device",
           "TrainingDiverged"]

Callback = Callable[[dict, RunLog], None]
_NEVER = 2 ** 62  # "no NaN step yet": larger than any step, so the earliest bad step is a min over ranks


class TrainingDiverged(RuntimeError):
    """The training or evaluation loss became NaN or infinite."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} cannot train a model here: use auto, cpu, cuda or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but this torch sees no CUDA GPU; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but is not available here; use --device auto or cpu")
    return device


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """Two SGD groups, with and without weight decay.

    ``decay="all"`` decays every parameter (the WRN reference); ``"weights"`` only tensors of
    dim > 1, i.e. conv and linear weights (the DiracNet reference). Names listed by the model's
    ``no_weight_decay()`` never decay.
    """
    exempt = hooks.no_weight_decay(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = name in exempt or (recipe.decay == "weights" and p.ndim <= 1)
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": recipe.weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def sgd(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """The recipe's SGD over ``param_groups``."""
    return torch.optim.SGD(param_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov)


def objective(model: nn.Module, recipe: Recipe) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss: the model's own ``loss`` hook (e.g. a complexity budget), else cross-entropy."""
    return hooks.custom_loss(model) or (
        lambda logits, y: F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing))


def autocast_for(recipe: Recipe, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the step's autocast context for the recipe's precision on ``device`` (fp32: none)."""
    return autocast_factory(recipe.precision, device)


def train_loader(data: CifarData, recipe: Recipe, device: torch.device, batch_size: int | None = None,
                 rank: int = 0, world_size: int = 1) -> GpuLoader:
    """The recipe's augmented, shuffled training batches on ``device`` (``batch_size``: the recipe's)."""
    return GpuLoader(data.train_images, data.train_labels, batch_size=batch_size or recipe.batch_size, train=True,
                     crop_pad=recipe.crop_pad, pad_mode=recipe.pad_mode, flip=recipe.flip,
                     drop_last=recipe.drop_last, seed=recipe.seed, mean=data.mean, std=data.std, device=device,
                     rank=rank, world_size=world_size)


@torch.no_grad()
def evaluate(model: nn.Module, loader: GpuLoader, autocast=nullcontext, flip: bool = False,
             per_image: bool = False) -> tuple:
    """Mean cross-entropy and accuracy over one pass of ``loader`` (eval mode); ``flip`` averages the
    logits of each image and its mirror (test-time augmentation: the training flips make both valid).
    ``per_image=True`` adds a third value: a bool tensor, on the CPU, of which images were classified
    right, in the loader's order (what a paired comparison of two networks needs; ``dirackit.stats``).

    A sharded loader (``world_size > 1``) yields one rank's part of the split: the sums are then
    added up over the ranks, so every rank returns the whole split's numbers (per-image results are
    then None: each rank saw only its part).
    """
    model.eval()
    loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    hits = []
    for x, y in loader:
        with autocast():
            logits = model(x).float()
            if flip:
                logits = (logits + model(x.flip(3)).float()) / 2
        loss += F.cross_entropy(logits, y, reduction="sum")
        hit = logits.argmax(1) == y
        correct += hit.sum()
        if per_image:
            hits.append(hit)
    if loader.world_size > 1:
        all_reduce(loss)
        all_reduce(correct)
    mean_loss, accuracy = loss.item() / loader.num_samples, correct.item() / loader.num_samples
    if not per_image:
        return mean_loss, accuracy
    return mean_loss, accuracy, (torch.cat(hits).cpu() if loader.world_size == 1 else None)


def fit(model: nn.Module, data: CifarData, recipe: Recipe = WRN, out: str | os.PathLike | None = None, *,
        resume: bool = False, callbacks: Iterable[Callback] = (), progress: bool = True,
        device: str | torch.device = "auto", sync_bn: bool = False, time_limit: float | None = None,
        verbose: bool | None = None) -> RunLog:
    """Train ``model`` on ``data`` with ``recipe``; returns the run's log (also written to ``out``).

    ``progress`` shows a bar during each epoch and ``verbose`` (default: as ``progress``) prints one
    line after it. Each callback is called as ``callback(row, run)`` after every epoch (live plots and
    ``dirackit.loggers`` use this); with several processes it is called on every rank, with the same
    row. ``sync_bn`` (CUDA, several processes) converts the BatchNorm layers in place to
    SyncBatchNorm, so they normalise over the global batch instead of each rank's part.

    ``time_limit`` (seconds of this call) stops the run at the end of the last epoch that fits in it,
    judged by how long the previous epoch took (one epoch is always trained): the returned log then
    has fewer rows than ``recipe.epochs``, and ``resume=True`` continues it with nothing trained
    twice. This is how a run longer than a job's time slot is split across several jobs.
    """
    if time_limit is not None and not time_limit > 0:  # NaN too
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit}")
    started = time.perf_counter()
    world, device = init_from_env(resolve_device(device))
    if sync_bn and device.type != "cuda":
        raise ValueError(f"sync_bn needs CUDA: SyncBatchNorm synchronises over NCCL and has no {device.type} "
                         f"version; train without it")
    if out is not None and not str(out).strip():  # Path("") would be the working directory
        raise ValueError("out is an empty string: name the run's folder (--out DIR), or pass out=None")
    out = None if out is None else Path(out)
    if resume and out is None:
        raise ValueError("resume=True needs out=DIR: the folder of the run to continue")
    printing = (progress if verbose is None else verbose) and world.is_main
    lock = None if out is None else on_main(lambda: claim(out, resume))  # no other run writes to out meanwhile
    try:
        session = _start_or_resume(model, data, recipe, out, resume=resume, progress=progress, printing=printing,
                                   device=device, world=world, sync_bn=sync_bn)
        for epoch in range(session.start_epoch, recipe.epochs):
            epoch_started = time.perf_counter()
            trained = _train_epoch(session, epoch)
            eval_started = time.perf_counter()
            test_loss, test_acc, test_correct = evaluate(session.model, session.test_batches, session.autocast,
                                                         flip=recipe.test_flip, per_image=True)
            _raise_if_evaluation_diverged(test_loss, epoch, session.checkpoint)
            row = {"epoch": epoch + 1, "step": session.step, "lr": trained.lr,
                   "train_loss": trained.loss, "train_acc": trained.acc, "test_loss": test_loss,
                   "test_acc": test_acc, "seconds": round(trained.seconds, 4),
                   "images_per_s": round(trained.images / trained.seconds, 1),
                   "eval_seconds": round(time.perf_counter() - eval_started, 4), **hooks.log_state(session.model),
                   **({"loss_scale": session.scaler.get_scale()} if session.scaler is not None else {})}
            session.run.append(row)
            if test_correct is not None:
                session.run.write_test_correct(epoch + 1, test_correct, session.test_set)
            _save(session, epoch)
            if printing:
                _print_epoch(row, recipe.epochs)
            for callback in callbacks:
                callback(row, session.run)
            if time_limit is not None and epoch + 1 < recipe.epochs and not _next_epoch_fits(
                    epoch_started, started + time_limit, device):
                break
        return session.run
    finally:
        if lock is not None:
            lock.release()


@dataclass
class _Session:
    """What ``fit`` sets up once and every epoch uses."""

    model: nn.Module  # the module whose weights are saved and evaluated
    train_model: nn.Module  # what a training step calls: ``model``, maybe DDP-wrapped and compiled
    optimizer: torch.optim.Optimizer
    train_batches: GpuLoader
    test_batches: GpuLoader
    recipe: Recipe
    device: torch.device
    world: World
    sync_bn: bool
    run: RunLog
    checkpoint: Path | None
    start_epoch: int
    step: int  # optimiser steps taken so far, over all epochs
    test_set: str  # digest of the test images, naming what test_correct.json is about
    autocast: Callable[[], AbstractContextManager]
    scaler: torch.amp.GradScaler | None  # fp16 only: scales the loss, skips steps whose gradients overflowed
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    bar: Callable


class _TrainedEpoch(NamedTuple):
    lr: float  # the last step's
    loss: float  # mean over the epoch's images (all ranks)
    acc: float
    seconds: float
    images: int


def _start_or_resume(model: nn.Module, data: CifarData, recipe: Recipe, out: Path | None, *, resume: bool,
                     progress: bool, printing: bool, device: torch.device, world: World,
                     sync_bn: bool) -> _Session:
    """Place the model, build the loaders and the optimiser, and create the run folder, or continue the
    one in ``out`` from its checkpoint (weights, optimiser, RNG, epoch)."""
    checkpoint = None if out is None else out / CHECKPOINT
    model = _placed(model, data, recipe, device, world, sync_bn)
    train_batches = train_loader(data, recipe, device, rank=world.rank, world_size=world.world_size)
    test_batches = GpuLoader(data.test_images, data.test_labels, batch_size=max(recipe.batch_size, 500),
                             train=False, mean=data.mean, std=data.std, device=device, rank=world.rank,
                             world_size=world.world_size)
    if len(train_batches) == 0:
        raise ValueError(f"batch_size {recipe.batch_size} exceeds the {train_batches.num_samples} training "
                         f"images and drop_last is set: lower batch_size or use more data")
    optimizer = sgd(model, recipe)
    scaler = grad_scaler(recipe.precision, device)
    header = _provenance(model, data, recipe, device, world, sync_bn)
    start_epoch, run = 0, None
    if resume:
        state = load_checkpoint(checkpoint, map_location=device)
        run = RunLog.read(out)
        check_same_run(state, run.header, header, out)
        load_weights(model, state["model"], out)
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and "scaler" in state:  # a run begun without one (another GPU) starts afresh
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng_ranks"][world.rank] if world.distributed else state["rng"])
        start_epoch = state["epoch"]
        if not world.is_main:
            run = RunLog(None, run.header, run.rows)  # rank 0 alone writes the folder
        run.truncate(start_epoch)
        run.add_session(header, start_epoch)
    if run is None:
        torch.manual_seed(recipe.seed + world.rank)  # ranks draw different dropout masks
        run = RunLog.create(out if world.is_main else None, header)
    train_model = data_parallel(model, device)
    train_model = torch.compile(train_model) if recipe.compile else train_model
    if printing:
        print(f"{'resuming' if start_epoch else 'training'} {header['model'].get('name')} on {header['device_name']}: "
              f"{describe_precision(recipe.precision, device)}", flush=True)
    return _Session(model, train_model, optimizer, train_batches, test_batches, recipe, device, world, sync_bn,
                    run, checkpoint, start_epoch, start_epoch * len(train_batches),
                    test_set_digest(data.test_images, data.test_labels), autocast_for(recipe, device), scaler,
                    objective(model, recipe), _progress_bar(progress and world.is_main))


def _placed(model: nn.Module, data: CifarData, recipe: Recipe, device: torch.device, world: World,
            sync_bn: bool) -> nn.Module:
    """The model on ``device`` in the recipe's memory layout, checked against the data's classes."""
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        if recipe.channels_last:
            model.to(memory_format=torch.channels_last)
    _check_output_size(model, data, device)
    if sync_bn and world.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _train_epoch(s: _Session, epoch: int) -> _TrainedEpoch:
    """One pass over the training batches: the hot loop. Losses and hits stay on the device, and the
    NaN check reads them back only every ``recipe.nan_check_every`` steps."""
    recipe, optimizer, device, scaler = s.recipe, s.optimizer, s.device, s.scaler
    train_model, autocast, loss_fn = s.train_model, s.autocast, s.loss_fn
    steps_per_epoch = len(s.train_batches)
    s.train_batches.set_epoch(epoch)
    if recipe.momentum_reset and recipe.schedule == "step" and epoch in recipe.milestones:
        optimizer.state.clear()  # as re-creating the optimiser at the lr drop: momentum starts from zero
    s.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), _NEVER, device=device, dtype=torch.long)  # global step of the first NaN
    step = s.step
    _sync(device)
    t0 = time.perf_counter()
    for x, y in s.bar(s.train_batches, desc=f"epoch {epoch + 1}/{recipe.epochs}"):
        lr = lr_at(recipe, step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast():
            logits = train_model(x)
            loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        backward_and_step(loss, optimizer, scaler)
        loss = loss.detach()
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        # The unscaled loss: a step the fp16 scaler skipped (its scaled gradients overflowed) has a finite
        # loss and changed nothing, so it is no divergence; a non-finite loss is one in any precision.
        first_bad = torch.where(torch.isfinite(loss), first_bad, first_bad.clamp(max=step))
        step += 1
        if step % recipe.nan_check_every == 0:
            _raise_if_diverged(first_bad, epoch, steps_per_epoch, s.checkpoint)
    _raise_if_diverged(first_bad, epoch, steps_per_epoch, s.checkpoint)
    _sync(device)
    seconds = time.perf_counter() - t0
    s.step = step
    all_reduce(loss_sum)  # sums over the ranks' parts: the log holds what one process would report
    all_reduce(correct)
    sync_buffers(s.model)
    seen = steps_per_epoch * recipe.batch_size if recipe.drop_last else s.train_batches.num_samples
    return _TrainedEpoch(lr, loss_sum.item() / seen, correct.item() / seen, seconds, seen)


def _save(s: _Session, epoch: int) -> None:
    """Rewrite the checkpoint after ``epoch``: everything an exact resume needs (rank 0 writes it)."""
    if s.checkpoint is None:
        return
    rng_ranks = gather_objects(rng_state())
    if s.world.is_main:
        save_checkpoint({"epoch": epoch + 1, "step": s.step, "model": s.model.state_dict(),
                         "optimizer": s.optimizer.state_dict(), "rng": rng_ranks[0],
                         "loader": s.train_batches.state_dict(), "recipe": s.recipe.asdict(),
                         "model_spec": hooks.build_spec(s.model), "world_size": s.world.world_size,
                         "sync_bn": s.sync_bn, **({"rng_ranks": rng_ranks} if s.world.distributed else {}),
                         **({"scaler": s.scaler.state_dict()} if s.scaler is not None else {})},
                        s.checkpoint, keep_previous=True)
    barrier()  # the checkpoint is on disk before any rank moves on (and may resume from it)


def _print_epoch(row: dict, epochs: int) -> None:
    print(f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.3f} "
          f"acc {row['train_acc']:.3f}  test loss {row['test_loss']:.3f} acc {row['test_acc']:.3f}  "
          f"{row['images_per_s']:.0f} img/s", flush=True)


def _next_epoch_fits(epoch_started: float, deadline: float, device: torch.device) -> bool:
    """Whether another epoch as long as the last one ends before ``deadline``; every rank gets the same
    answer, so all stop after the same epoch."""
    now = time.perf_counter()
    fits = torch.tensor(int(now + (now - epoch_started) <= deadline), device=device)
    return bool(all_reduce(fits, "min").item())


def _check_output_size(model: nn.Module, data: CifarData, device: torch.device) -> None:
    """Labels must fit the model's head, or cross-entropy fails deep inside the loop."""
    was_training = model.training
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(2, 3, 32, 32, device=device)).shape[-1]
    model.train(was_training)
    if data.num_classes < 2:
        raise DataError(f"{data.source} has a single class ({', '.join(data.classes) or 'none'}): a classifier "
                        f"needs at least two; point at a dataset with several class folders")
    if outputs < data.num_classes:
        raise DataError(f"labels out of range: the data has {data.num_classes} classes but the model outputs "
                        f"{outputs}; build it with num_classes={data.num_classes}")


def _raise_if_diverged(first_bad: torch.Tensor, epoch: int, steps_per_epoch: int, checkpoint: Path | None):
    bad = int(all_reduce(first_bad.clone(), "min").item())  # every rank stops at the same check
    if bad == _NEVER:
        return
    where = f"epoch {epoch + 1}, step {bad - epoch * steps_per_epoch + 1} of {steps_per_epoch}"
    raise TrainingDiverged(f"training loss became NaN/inf at {where}; {_last_good(epoch, checkpoint)}. "
                           f"Lower the learning rate or check the model and data.")


def _raise_if_evaluation_diverged(test_loss: float, epoch: int, checkpoint: Path | None) -> None:
    """A finite training loss with NaN/inf test logits (e.g. overflowing BatchNorm statistics) is a
    diverged run too; its epoch is neither logged nor saved. The loss is the same on every rank."""
    if not math.isfinite(test_loss):
        raise TrainingDiverged(f"evaluation loss became NaN/inf after epoch {epoch + 1} (the training loss was "
                               f"finite); {_last_good(epoch, checkpoint)}. Lower the learning rate or check the "
                               f"model and data.")


def _last_good(epoch: int, checkpoint: Path | None) -> str:
    if checkpoint and checkpoint.exists():
        return f"the last good checkpoint ({epoch} epochs) is {checkpoint}"
    if checkpoint:  # the folder keeps config.json and log.jsonl, which a new run there refuses to overwrite
        return f"no checkpoint was written yet, so start again in a new folder or delete {checkpoint.parent}"
    return "no checkpoint was written yet"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress_bar(enabled: bool):
    if not enabled:
        return lambda iterable, desc: iterable
    from tqdm.auto import tqdm
    return lambda iterable, desc: tqdm(iterable, desc=desc, leave=False)


def _capability(device: torch.device) -> str | None:
    capability = compute_capability(device)
    return None if capability is None else f"{capability[0]}.{capability[1]}"


def _provenance(model: nn.Module, data: CifarData, recipe: Recipe, device: torch.device, world: World,
                sync_bn: bool) -> dict:
    return {
        "model": hooks.build_spec(model), "num_params": count_params(model), "recipe": recipe.asdict(), "seed": recipe.seed,
        "data": {"source": data.source, "sha256": data.sha256, "classes": list(data.classes),
                 "train_images": len(data.train_labels), "test_images": len(data.test_labels)},
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(), "compute_capability": _capability(device),
        "precision": resolve_precision(recipe.precision, device), "world_size": world.world_size, "sync_bn": sync_bn,
        "torch": torch.__version__, "python": platform.python_version(), "dirackit": __version__,
        "git_commit": _git_commit(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    """The commit of the dirackit checkout, with ``-dirty`` when it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) or None
