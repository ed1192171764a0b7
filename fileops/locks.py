"""One exclusive lock on a file (``flock``), for threads and processes of one machine."""
from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


class LockBusy(Exception):
    """Another holder has the lock and the caller asked not to wait."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is locked by another holder")
        self.path = path


@contextlib.contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its parent directories) for the body;
    with ``wait=False``, raise LockBusy at once when someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            raise LockBusy(path) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
