"""Checkpoints that survive being killed: written to a temp file, then renamed into place.

A checkpoint holds everything exact resume needs (model, optimiser, step, RNG and loader state)
and only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os

import torch

from .atomic import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state",
           "CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError for damaged files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); "
                              f"delete it to start the run over") from e


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
