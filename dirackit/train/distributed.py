"""Data-parallel training on several processes started by ``torchrun``: the process group and the few
collectives the trainer needs.

``torchrun --nproc_per_node=N -m dirackit.train ...`` starts N trainers with RANK, WORLD_SIZE and
LOCAL_RANK set. ``fit`` joins their process group through :func:`init_from_env` (NCCL on CUDA, each
rank on ``cuda:LOCAL_RANK``; gloo on the CPU) and trains a DistributedDataParallel wrapper of the
model. Without these variables, or with WORLD_SIZE=1, there is no process group and nothing here
has an effect.

How the ranks share the work:

- ``recipe.batch_size`` is the global batch. Each rank trains on its part of every batch (see
  ``GpuLoader``) and DDP averages the gradients, so a step is the single-process step on the same
  images and the recipe's learning rate stays valid. BatchNorm is the exception: it normalises each
  rank's part, unless ``sync_bn`` (CUDA only) turns the layers into SyncBatchNorm.
- Buffers (BatchNorm running statistics) are rank 0's: DDP broadcasts them before every forward,
  and :func:`sync_buffers` again before each evaluation and checkpoint.
- Each rank evaluates its part of the test set. Losses and hits are summed over the ranks, so the
  log holds what one process would report.
- Rank 0 alone writes the run folder and prints. On resume every rank reads the checkpoint, so the
  folder must be visible to all of them (one machine, or a shared filesystem).

A script of your own that calls ``fit`` under torchrun should end with :func:`shutdown`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["World", "init_from_env", "is_main", "data_parallel", "all_reduce", "sync_buffers",
           "gather_objects", "barrier", "main_first", "on_main", "shutdown"]

RENDEZVOUS_TIMEOUT_S = 120  # torchrun starts every process at once; leftover variables must not wait forever
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank 0 of 1 when it trains alone."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_env(device: torch.device) -> tuple[World, torch.device]:
    """This process's ``World`` and device; joins the process group torchrun's variables describe.

    Calling it again, or after ``torch.distributed.init_process_group``, uses the existing group.
    A CUDA device without an index becomes ``cuda:LOCAL_RANK``: one GPU per process.
    """
    if _initialized():
        world = World(dist.get_rank(), dist.get_world_size())
    else:
        world_size = _env_int("WORLD_SIZE", 1)
        world = World(_env_int("RANK") if world_size > 1 else 0, world_size)
    if not world.distributed:
        return world, device
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"training on {world.world_size} processes needs CUDA (NCCL) or the CPU (gloo), "
                         f"not {device.type}; use --device cuda or cpu")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", _env_int("LOCAL_RANK"))
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"this process wants cuda:{device.index} but the machine has "
                             f"{torch.cuda.device_count()} CUDA devices: start one process per GPU "
                             f"(torchrun --nproc_per_node={torch.cuda.device_count()})")
        torch.cuda.set_device(device)
    if not _initialized():
        if not dist.is_available():
            raise ValueError(f"WORLD_SIZE={world.world_size} but this torch build has no torch.distributed: "
                             f"train in one process")
        _join(world, "nccl" if device.type == "cuda" else "gloo")
    return world, device


def is_main() -> bool:
    """True on rank 0, and when there is no process group."""
    return not _initialized() or dist.get_rank() == 0


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to train: ``model`` wrapped in DistributedDataParallel in a process group, else itself.

    Wrapping broadcasts rank 0's parameters and buffers, so every rank starts from the same model.
    """
    if not _initialized() or dist.get_world_size() == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def all_reduce(tensor: torch.Tensor, op: Literal["sum", "min"] = "sum") -> torch.Tensor:
    """``tensor``, reduced in place over all ranks (unchanged without a process group)."""
    if _initialized():
        dist.all_reduce(tensor, dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return tensor


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, as DDP does before a forward.

    After the last step of an epoch each rank's statistics include its own part of the batch; this
    makes the model identical everywhere before it is evaluated and saved.
    """
    if _initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def gather_objects(obj: Any) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` without a process group)."""
    if not _initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here."""
    if _initialized():
        nccl = dist.get_backend() == "nccl"  # NCCL wants the GPU to synchronise on, or it warns and guesses
        dist.barrier(device_ids=[torch.cuda.current_device()] if nccl else None)


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others: e.g. fill a download or decode cache once."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def on_main(fn: Callable[[], T]) -> T | None:
    """``fn()`` on rank 0 alone (None on the others). If it raises there, every rank raises, so that
    none is left waiting at the next collective for a rank that gave up."""
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:
            error = e
    if _initialized():
        message = [None if error is None else str(error)]
        dist.broadcast_object_list(message, src=0)
        if error is None and message[0] is not None:
            raise ValueError(f"rank 0 stopped: {message[0]}")  # a ValueError: the command line says it in one line
    if error is not None:
        raise error
    return result


def shutdown() -> None:
    """Leave the process group, if there is one (NCCL warns at exit when a group is left open)."""
    if _initialized():
        dist.destroy_process_group()


def _join(world: World, backend: str) -> None:
    """Join the process group; give up after ``RENDEZVOUS_TIMEOUT_S`` when the other processes never
    come (e.g. WORLD_SIZE and MASTER_ADDR left over in the shell), then keep torch's own timeout for
    the collectives (a rank may wait minutes at a barrier while rank 0 fills the data cache)."""
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=RENDEZVOUS_TIMEOUT_S))
    except (RuntimeError, ValueError) as e:  # DistStoreError / DistNetworkError, or a missing MASTER_ADDR
        raise ValueError(f"the {world.world_size} training processes of WORLD_SIZE={world.world_size} did not meet "
                         f"within {RENDEZVOUS_TIMEOUT_S} s ({_one_line(e)}): to train in one process, unset "
                         f"WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT; to train on several, start them with "
                         f"torchrun") from None
    set_timeout = getattr(dist, "set_timeout", None) or dist.distributed_c10d._set_pg_timeout  # older torch: the private name
    set_timeout(dist.distributed_c10d._get_default_timeout(backend))


def _one_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"{name} is not set: start several training processes with torchrun, which sets "
                             f"RANK, WORLD_SIZE and LOCAL_RANK")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer (torchrun sets it), got {value!r}") from None
