"""Writing a file so that a crash or a concurrent writer never leaves a torn copy behind.

The new content goes to a temporary file next to the target (``.<name>.<random>.tmp``), which is
renamed onto it once complete. The temporary file is created like any other file, so the user's
umask decides its mode (``tempfile.mkstemp`` would make everything 0600), and it is locked while
written, so that ``remove_stale_temporaries`` can tell the leftovers of a killed writer from a
write in progress.
"""
from __future__ import annotations

import os
import secrets
import time
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temporaries are then left alone
    fcntl = None

__all__ = ["atomic_write", "remove_stale_temporaries"]

STALE_AFTER_S = 10  # a temporary file this old and unlocked belongs to a writer that died


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, sync it, then rename it onto ``path``.

    The rename is atomic (POSIX and Windows), so readers see the old file or the whole new one, and of
    two processes writing at once the last rename wins with a complete file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed or the process dies
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)  # still locked, so a finished write is never taken for a dead one
        if fcntl is None:
            os.replace(tmp, path)  # Windows renames no open file
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike, *names: str) -> list[Path]:
    """Delete the temporary files that killed ``atomic_write`` calls left in ``folder`` for the files
    matching the glob patterns ``names`` (e.g. ``"checkpoint.pt"``, ``"cifar-*.npz"``); returns them.

    A temporary file is stale when no process holds its lock and it is older than a few seconds (the
    age covers the instant between its creation and its locking)."""
    if fcntl is None:
        return []
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            try:
                fd = os.open(tmp, os.O_RDONLY)
            except OSError:
                continue  # renamed or removed meanwhile
            try:
                if time.time() - os.fstat(fd).st_mtime < STALE_AFTER_S:
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass  # locked: a live writer
            finally:
                os.close(fd)
    return removed


def _create_temporary(path: Path) -> tuple[int, str]:
    while True:
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
