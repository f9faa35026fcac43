import os
import time

import pytest

from dirackit.atomic import atomic_write, remove_stale_temporaries


def test_a_crash_while_writing_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def half_then_crash(f):
        f.write(b"new, but")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.bin"]
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["file.bin"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "file.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "file.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_stale_temporaries_are_removed_but_not_a_write_in_progress(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    dead, live, young, other = (tmp_path / f".{name}.tmp" for name in
                                ("checkpoint.pt.dead", "checkpoint.pt.live", "checkpoint.pt.young", "notes.txt.x"))
    for path in (dead, live, young, other):
        path.write_bytes(b"partial")
    for path in (dead, live, other):
        os.utime(path, (time.time() - 60, time.time() - 60))  # young keeps its fresh mtime
    with open(live, "rb") as writing:
        fcntl.flock(writing, fcntl.LOCK_EX)  # as atomic_write holds it while writing
        removed = remove_stale_temporaries(tmp_path, "checkpoint.pt")
    assert removed == [dead] and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, young, other))
