"""The operations journal: multi-step operations in flight, so ``reconcile`` can tell stuck from busy."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Iterator

from sqlalchemy import delete, select

from ivfarm.services.cloud import Cloud
from ivfarm.store.models import Operation, utcnow

# An operation started on another controller is presumed alive for this long.
REMOTE_GRACE = dt.timedelta(minutes=15)


@contextlib.contextmanager
def operation(cloud: Cloud, kind: str, target: str) -> Iterator[None]:
    """Record ``kind`` on ``target`` as in flight for the duration of the body."""
    with cloud.store.write() as session:
        op = Operation(kind=kind, target=target, payload={"pid": os.getpid(), "node": socket.gethostname()})
        session.add(op)
        session.flush()
        op_id = op.id
    try:
        yield
    finally:
        with cloud.store.write() as session:
            session.execute(delete(Operation).where(Operation.id == op_id))


def _alive(op: Operation) -> bool:
    if op.payload.get("node") != socket.gethostname():
        started = op.started_at if op.started_at.tzinfo else op.started_at.replace(tzinfo=dt.timezone.utc)
        return utcnow() - started < REMOTE_GRACE
    try:
        os.kill(int(op.payload["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        return False
    except PermissionError:
        return True
    return _not_zombie(int(op.payload["pid"]))


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def busy_targets(cloud: Cloud) -> set[str]:
    """Targets with an operation whose process still lives; stale journal rows are dropped."""
    busy, stale = set(), []
    with cloud.store.write() as session:
        for op in session.scalars(select(Operation)):
            if _alive(op):
                busy.add(op.target)
            else:
                stale.append(op.id)
        if stale:
            session.execute(delete(Operation).where(Operation.id.in_(stale)))
    return busy
