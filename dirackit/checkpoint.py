"""Checkpoints that survive being killed and say when they are damaged.

A checkpoint holds everything exact resume needs (model, optimiser, step, RNG and loader state)
and only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``. It is
written to a temporary file, then renamed into place, and carries ``checksum``: a sha256 of its
contents, checked on load, so a flipped bit on disk is refused instead of trained on (checkpoints
written before the checksum existed load unchecked). ``keep_previous`` keeps the checkpoint being
replaced as ``<name>.previous.pt`` (a hard link: no copy), the alternative a damaged one names.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from pathlib import Path

import torch

from .atomic import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "previous_checkpoint", "rng_state", "set_rng_state",
           "CheckpointError"]

CHECKSUM = "checksum"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or whose contents do not match its checksum."""


def save_checkpoint(state: dict, path: str | os.PathLike, keep_previous: bool = False) -> None:
    path = Path(path)
    if keep_previous and path.is_file():
        link = path.with_name(f".{previous_checkpoint(path).name}.link")
        with suppress(OSError):  # a filesystem without hard links keeps no previous checkpoint
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, previous_checkpoint(path))
    state = {**state, CHECKSUM: _checksum(state)}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's state (without its checksum); a damaged file raises ``CheckpointError`` naming
    the previous checkpoint when that one is intact."""
    try:
        return _load(path, map_location)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {_alternative(Path(path))}") from None


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where ``save_checkpoint(..., keep_previous=True)`` keeps the checkpoint it replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def rng_state() -> dict:
    """The global RNG states that training consumes (dropout, init): CPU and, if used, CUDA."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore ``rng_state()``; the states may have been loaded onto a GPU, and torch takes them on the CPU."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _load(path: str | os.PathLike, map_location) -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError for damaged files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint's dict")
    if CHECKSUM in state:
        saved = state.pop(CHECKSUM)
        if saved != _checksum(state):
            raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match its checksum")
    return state


def _alternative(path: Path) -> str:
    previous = previous_checkpoint(path)
    try:
        epoch = _load(previous, "cpu").get("epoch")
    except (OSError, CheckpointError):
        return "no earlier checkpoint of this run is intact: train it again in a new folder"
    return f"the previous one, {previous} (epoch {epoch}), is intact: rename it to {path.name} to resume from it"


def _checksum(state: dict) -> str:
    """sha256 of every key, plain value and tensor (dtype, shape, bytes) of ``state``, in order."""
    h = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"<tensor {t.dtype} {tuple(t.shape)}>".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, dict):
            h.update(b"{")
            for k, v in value.items():
                feed(k)
                feed(v)
            h.update(b"}")
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for v in value:
                feed(v)
            h.update(b"]")
        else:
            h.update(f"<{type(value).__name__} {value!r}>".encode())

    feed(state)
    return h.hexdigest()
