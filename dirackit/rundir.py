"""A run folder is written only by the run that owns it.

``claim`` is called where a run starts or resumes: it locks the folder for the run's lifetime (a
second process gets one line naming the holder), refuses to start a new run over another run's
files and to resume a run that has no checkpoint, and removes the temporary files of writes that a
killed run left behind. ``check_same_run`` and ``load_weights`` refuse, in one line, to resume with
another setup, other data or another model structure than the run was started with.
"""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from torch import nn

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no run folder is locked
    fcntl = None

from .atomic import remove_stale_temporaries
from .checkpoint import previous_checkpoint
from .recipes import saved_fields
from .runlog import CHECKPOINT, CONFIG, LOG, TEST_CORRECT

__all__ = ["claim", "RunFolderLock", "RunFolderError", "check_same_run", "load_weights"]

LOCK = ".lock"
RUN_FILES = (CONFIG, LOG, CHECKPOINT)
DATA_IDENTITY = ("sha256", "classes", "train_images", "test_images")  # the source's path may move


class RunFolderError(ValueError):
    """A run folder that this run may not write: another run's, in use, or not resumable."""


class RunFolderLock:
    """The lock a run holds on its folder while it writes there; ``release()`` when the run ends
    (a process that dies releases it too)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder, self._fd = folder, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None


def claim(out: str | os.PathLike, resume: bool) -> RunFolderLock:
    """Lock ``out`` for this run, then check that a new run finds no run's files there (``config.json``,
    ``log.jsonl``, ``checkpoint.pt``) and that ``resume`` finds a checkpoint."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder} is a file, not a folder: choose a folder for the run (--out DIR)")
    if resume and not folder.is_dir():
        raise RunFolderError(f"cannot resume {folder}: no such folder; check the path, or drop --resume "
                             f"(resume=False) to start a new run there")
    if not (folder / LOCK).exists():
        _check(folder, resume)  # refused before a lock file is left in a folder that is not this run's
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder)
    try:
        remove_stale_temporaries(folder, *RUN_FILES, TEST_CORRECT, previous_checkpoint(CHECKPOINT).name)
        _check(folder, resume)  # again, now that no other run can write there
    except BaseException:
        lock.release()
        raise
    return lock


def _check(folder: Path, resume: bool) -> None:
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if resume and not found:
        raise RunFolderError(f"cannot resume {folder}: no run was started there (no {CHECKPOINT}); drop "
                             f"--resume (resume=False) to start one")
    if found and CHECKPOINT not in found:
        raise RunFolderError(f"{folder} holds a run's {' and '.join(found)} but no {CHECKPOINT} (an exported "
                             f"log, or a run stopped before its first epoch ended): nothing to resume, and "
                             f"it is not overwritten; choose a new folder, or delete these files to start over")
    if not resume and found:
        raise RunFolderError(f"{folder} already holds a run ({', '.join(found)}): pass --resume "
                             f"(resume=True) to continue it, or choose a new folder")


def check_same_run(state: dict, saved: dict, header: dict, out: str | os.PathLike) -> None:
    """Refuse to resume the run of checkpoint ``state`` and provenance ``saved`` (its config.json)
    with another setup (``header``: this call's provenance), data or model."""
    # The process layout decides what each step computes, so it is part of the setup (old runs: one process).
    # A recipe field added since the run started reads as its default, so older runs still resume.
    was = {**saved_fields(state["recipe"]), "world_size": state.get("world_size", 1),
           "sync_bn": state.get("sync_bn", False)}
    now = {**header["recipe"], "world_size": header["world_size"], "sync_bn": header["sync_bn"]}
    changed = [f"{k}: {was.get(k)!r} -> {now[k]!r}" for k in now if not _same(was.get(k), now[k])]
    if changed:
        raise RunFolderError(f"cannot resume {out}: it was started with a different setup ({', '.join(changed)}); "
                             f"use the same settings or a new folder")
    was_model, now_model = _model_identity(state.get("model_spec", {})), _model_identity(header["model"])
    if not _same(was_model, now_model):
        what = ", ".join(f"{k}: {was_model.get(k)!r} -> {now_model.get(k)!r}" for k in now_model
                         if not _same(was_model.get(k), now_model.get(k)))
        raise RunFolderError(f"cannot resume {out}: it trains another model ({what}); use the model it was "
                             f"started with (the same --model and --dropout: its {CONFIG} says which) or a new folder")
    data = saved.get("data")
    if not isinstance(data, dict):
        raise RunFolderError(f"cannot resume {out}: its {CONFIG} has no data section, so the data cannot be "
                             f"checked; start the run again in a new folder")
    changed = [f"{k}: {_short(data.get(k))} -> {_short(header['data'][k])}" for k in DATA_IDENTITY
               if not _same(data.get(k), header["data"][k])]
    if changed:
        raise RunFolderError(f"cannot resume {out}: it was trained on other data ({'; '.join(changed)}); "
                             f"use the same --data and --subset, or a new folder")


def load_weights(model: nn.Module, weights: dict, out: str | os.PathLike) -> None:
    """``model.load_state_dict(weights)``, with a mismatch said in one line."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise RunFolderError(f"cannot resume {out}: its checkpoint does not fit this model ("
                             f"{detail[:300]}{'...' if len(detail) > 300 else ''}); use the model it was "
                             f"started with (its {CONFIG} says which)") from None


def _lock(folder: Path) -> RunFolderLock:
    if fcntl is None:  # Windows: no advisory locks
        return RunFolderLock(folder, None)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunFolderError(f"{folder} is in use by another run ({holder}): wait for it to end, or choose "
                             f"another folder") from None
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode(), 0)
    return RunFolderLock(folder, fd)


def _model_identity(spec: dict) -> dict:
    return {"name": spec.get("name"), "num_classes": spec.get("num_classes"), "options": spec.get("options") or {}}


def _same(a, b) -> bool:
    """Equal once through JSON (a tuple in the checkpoint equals the list in config.json)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _short(value) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "..."  # a sha256
    if isinstance(value, list) and len(value) > 4:
        return f"{len(value)} classes {value[:3]}..."
    return repr(value)
