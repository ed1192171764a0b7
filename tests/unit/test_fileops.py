"""The shared file mechanics: one exclusive lock, one atomic write."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fileops.atomic import atomic_open, atomic_write
from fileops.locks import LockBusy, exclusive_lock


def test_lock_creates_its_directory_and_refuses_a_second_holder_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.lock"
    with exclusive_lock(path):
        assert path.exists()
        with pytest.raises(LockBusy, match="x.lock"), exclusive_lock(path, wait=False):
            pass
    with exclusive_lock(path, wait=False):  # released
        pass


def test_atomic_write_sets_the_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "records.json"
    target.write_text("old")
    atomic_write(target, "new", 0o600)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["records.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "spec.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as stream:
        stream.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]
