"""Locks that keep two runs of a cron job apart, on one controller (a file) and across several (PostgreSQL)."""
from __future__ import annotations

import contextlib
import fcntl
import zlib
from collections.abc import Iterator

from sqlalchemy import text

from ivfarm.errors import LockHeld
from ivfarm.services.cloud import Cloud


@contextlib.contextmanager
def job_lock(cloud: Cloud, name: str) -> Iterator[None]:
    """Hold the lock ``name`` for the body or raise LockHeld at once if another run holds it."""
    lock_dir = cloud.config.state_dir / "run"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LockHeld(f"another '{name}' run is in progress (lock {lock_dir / (name + '.lock')})") from exc
        try:
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
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
