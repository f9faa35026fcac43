import os

import pytest

from dirackit.atomic import atomic_write


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
