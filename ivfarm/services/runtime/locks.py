"""Locks: files under ``<state_dir>/run`` on one controller, plus PostgreSQL advisory locks across several."""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

from sqlalchemy import text

from fileops.locks import LockBusy, exclusive_lock
from ivfarm.errors import LockHeld
from ivfarm.services.runtime.context import CloudContext


@contextlib.contextmanager
def run_lock(cloud: CloudContext, name: str, wait: bool = True) -> Iterator[None]:
    """Hold ``<state_dir>/run/<name>.lock`` exclusively (threads and processes of this controller);
    without ``wait``, raise LockHeld at once when someone else holds it."""
    path = cloud.config.state_dir / "run" / f"{name}.lock"
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(path, wait))
        except LockBusy as exc:
            raise LockHeld(f"another '{name}' run is in progress (lock {path})") from exc
        yield


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
