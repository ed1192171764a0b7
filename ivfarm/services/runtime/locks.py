"""Locks: files under ``<state_dir>/run`` on one controller, plus PostgreSQL advisory locks across several."""
from __future__ import annotations

import contextlib
import fcntl
import zlib
from collections.abc import Iterator

from sqlalchemy import text

from ivfarm.errors import LockHeld
from ivfarm.services.runtime.context import CloudContext


@contextlib.contextmanager
def run_lock(cloud: CloudContext, name: str, wait: bool = True) -> Iterator[None]:
    """Hold ``<state_dir>/run/<name>.lock`` exclusively (threads and processes of this controller);
    without ``wait``, raise LockHeld at once when someone else holds it."""
    lock_dir = cloud.config.state_dir / "run"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{name}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            raise LockHeld(f"another '{name}' run is in progress (lock {path})") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def job_lock(cloud: CloudContext, name: str) -> Iterator[None]:
    """Hold the cron job lock ``name`` for the body or raise LockHeld at once if another run holds it."""
    with run_lock(cloud, name, wait=False):
        if cloud.store.is_sqlite:
            yield
            return
        key = zlib.crc32(name.encode())
        with cloud.store.engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                raise LockHeld(f"another controller is running '{name}'")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
