"""Work in flight, so ``reconcile`` can tell stuck from busy.

Instances record the process that builds or tears them down (``Instance.owner``, written in the
same transaction that makes them pending or shutting-down); other multi-step operations (farm
create/delete, migration, failover) write an ``operations`` row for their duration.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Iterator

from sqlalchemy import delete, select

from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Instance, Operation, utcnow

# An operation started on another controller is presumed alive for this long.
REMOTE_GRACE = dt.timedelta(minutes=15)


def me() -> str:
    """This process, as recorded in ``Instance.owner`` and operation rows."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def operation(cloud: CloudContext, kind: str, target: str) -> Iterator[None]:
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


def alive(node: str, pid: int, since: dt.datetime) -> bool:
    """True while the process ``pid`` on ``node`` runs (another node's: for REMOTE_GRACE after ``since``)."""
    if node != socket.gethostname():
        return utcnow() - since < REMOTE_GRACE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _owner_alive(owner: str, since: dt.datetime) -> bool:
    node, _, pid = owner.rpartition(":")
    return pid.isdigit() and alive(node, int(pid), since)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def busy_targets(cloud: CloudContext) -> set[str]:
    """Targets with an operation whose process still lives; stale journal rows are dropped."""
    busy, stale = set(), []
    with cloud.store.write() as session:
        for op in session.scalars(select(Operation)):
            if alive(str(op.payload.get("node")), int(op.payload.get("pid", 0)), op.started_at):
                busy.add(op.target)
            else:
                stale.append(op.id)
        if stale:
            session.execute(delete(Operation).where(Operation.id.in_(stale)))
        for instance_id, owner, created in session.execute(
                select(Instance.id, Instance.owner, Instance.created_at)
                .where(Instance.state.in_(("pending", "shutting-down")), Instance.owner.is_not(None))):
            if owner is not None and _owner_alive(owner, created):
                busy.add(instance_id)
    return busy
