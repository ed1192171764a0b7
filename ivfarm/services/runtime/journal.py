"""Work in flight, so ``reconcile`` can tell stuck from busy.

Instances record the process that does their work in flight (``Instance.owner``, written by the
same compare-and-set that makes them pending, stopping, rebooting or shutting-down); other
multi-step operations (farm create/delete, migration, failover) write an ``operations`` row for
their duration. Both carry ``heartbeat_at``: a daemon thread per process (``Heartbeat``) renews,
every ``journal.heartbeat_s`` seconds, the heartbeat of all work that process owns. Work whose
heartbeat is older than ``journal.heartbeat_lapse_s`` is stuck, whoever owns it and wherever;
work of a process of this node that is gone is stuck at once (the pid check is a fast path).
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ivfarm.services.runtime.context import CloudContext
from ivfarm.store import Store, jobs
from ivfarm.store.models import IN_FLIGHT, Instance, Operation, utcnow

log = logging.getLogger(__name__)


def me() -> str:
    """This process, as recorded in ``Instance.owner`` and operation rows."""
    return f"{socket.gethostname()}:{os.getpid()}"


# -- the heartbeat -------------------------------------------------------------------------------
@dataclass
class _Watch:
    store: Store
    interval_s: float
    operations: set[int] = field(default_factory=set)
    touched: int = 0  # bumped by every watch(), so a renewal that found nothing knows it raced one


class Heartbeat:
    """One daemon thread per process renewing the heartbeat of the work this process owns, in
    every store it claimed work in; a store with nothing left to renew is dropped, and the
    thread ends when none is left (``stop`` ends it at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def watch(self, store: Store, interval_s: float, operation_id: int | None = None) -> None:
        """Renew the heartbeat of this process's work in ``store`` (call after the claim committed)."""
        with self._lock:
            entry = self._watches.setdefault(id(store), _Watch(store, interval_s))
            entry.interval_s = min(entry.interval_s, interval_s)
            entry.touched += 1
            if operation_id is not None:
                entry.operations.add(operation_id)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="ivfarm-heartbeat", daemon=True)
                self._thread.start()

    def done(self, store: Store, operation_id: int) -> None:
        """The operation ended: stop renewing it."""
        with self._lock:
            entry = self._watches.get(id(store))
            if entry is not None:
                entry.operations.discard(operation_id)

    def stop(self) -> None:
        """End the thread (work still owned lapses unless something is watched again)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _interval(self) -> float:
        with self._lock:
            return min((w.interval_s for w in self._watches.values()), default=1.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            with self._lock:
                rounds = [(key, w, w.touched, set(w.operations)) for key, w in self._watches.items()]
                if not rounds:
                    self._thread = None
                    return
            for key, entry, touched, operations in rounds:
                try:
                    renewed = renew(entry.store, operations)
                except Exception:  # noqa: BLE001 - a store that went away is dropped, the others go on
                    log.warning("heartbeat renewal failed; no longer renewing that store", exc_info=True)
                    renewed = 0
                    operations = set()
                with self._lock:
                    if not renewed and not operations and entry.touched == touched:
                        self._watches.pop(key, None)


HEARTBEAT = Heartbeat()
atexit.register(HEARTBEAT.stop)


def renew(store: Store, operations: set[int]) -> int:
    """Renew the heartbeat of this process's instances in flight and of ``operations``; how many."""
    now = utcnow()
    with store.write() as session:
        done: Any = session.execute(update(Instance).where(Instance.owner == me(), Instance.state.in_(IN_FLIGHT))
                                    .values(heartbeat_at=now).execution_options(synchronize_session=False))
        count = int(done.rowcount or 0)
        if operations:
            done = session.execute(update(Operation).where(Operation.id.in_(operations))
                                   .values(heartbeat_at=now).execution_options(synchronize_session=False))
            count += int(done.rowcount or 0)
    return count


def watch(cloud: CloudContext) -> None:
    """Keep this process's work in ``cloud`` alive (after a transaction that claimed some committed)."""
    HEARTBEAT.watch(cloud.store, float(cloud.config.get("journal.heartbeat_s")))


# -- liveness ------------------------------------------------------------------------------------
def lapse(cloud: CloudContext) -> dt.timedelta:
    """How old a heartbeat may be before its work counts as stuck."""
    return dt.timedelta(seconds=float(cloud.config.get("journal.heartbeat_lapse_s")))


def owner_alive(cloud: CloudContext, owner: str | None, heartbeat: dt.datetime | None) -> bool:
    """True while the work of ``owner`` (``node:pid``) counts as in flight: its heartbeat is fresh
    and, for a process of this node, that process still runs."""
    if not owner:
        return False
    if owner == me():
        return True
    node, _, pid = owner.rpartition(":")
    if node == socket.gethostname() and (not pid.isdigit() or not _pid_alive(int(pid))):
        return False
    return heartbeat is not None and utcnow() - heartbeat < lapse(cloud)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _operation_owner(op: Operation) -> str:
    return f"{op.payload.get('node')}:{op.payload.get('pid', 0)}"


# -- operations ----------------------------------------------------------------------------------
@contextlib.contextmanager
def operation(cloud: CloudContext, kind: str, target: str) -> Iterator[None]:
    """Record ``kind`` on ``target`` as in flight (heartbeat renewed) for the duration of the body."""
    with cloud.store.write() as session:
        op = Operation(kind=kind, target=target, payload={"pid": os.getpid(), "node": socket.gethostname()},
                       heartbeat_at=utcnow())
        session.add(op)
        session.flush()
        op_id = op.id
    HEARTBEAT.watch(cloud.store, float(cloud.config.get("journal.heartbeat_s")), op_id)
    try:
        yield
    finally:
        HEARTBEAT.done(cloud.store, op_id)
        with cloud.store.write() as session:
            session.execute(delete(Operation).where(Operation.id == op_id))


def target_busy(cloud: CloudContext, session: Session, target: str) -> bool:
    """True while a live operation works on ``target`` (read in the caller's transaction)."""
    return any(owner_alive(cloud, _operation_owner(op), op.heartbeat_at)
               for op in session.scalars(select(Operation).where(Operation.target == target)))


def instance_busy(cloud: CloudContext, session: Session, instance: Instance) -> bool:
    """True while a live process works on the instance: its owner (for a state in flight), a job of the
    queue, or an operation."""
    if instance.state in IN_FLIGHT and owner_alive(cloud, instance.owner, instance.heartbeat_at):
        return True
    if any(owner_alive(cloud, worker, beat) for _, worker, beat in jobs.running_for_instances(session, instance.id)):
        return True  # a live provisioner is working on it
    return target_busy(cloud, session, instance.id)


def stale_guard(instance: Instance) -> list[Any]:
    """Conditions for a compare-and-set that takes over work judged stuck: the owner and heartbeat
    are still those that were judged."""
    return [Instance.owner.is_not_distinct_from(instance.owner),
            Instance.heartbeat_at.is_not_distinct_from(instance.heartbeat_at)]


def busy_targets(cloud: CloudContext) -> set[str]:
    """Targets with live work (operations, instances in flight); stale journal rows are dropped.
    A snapshot: act on one target only after re-checking it (``instance_busy``) where you act."""
    busy, stale = set(), []
    with cloud.store.write() as session:
        for op in session.scalars(select(Operation)):
            if owner_alive(cloud, _operation_owner(op), op.heartbeat_at):
                busy.add(op.target)
            else:
                stale.append(op.id)
        if stale:
            session.execute(delete(Operation).where(Operation.id.in_(stale)))
        for instance_id, owner, heartbeat in session.execute(
                select(Instance.id, Instance.owner, Instance.heartbeat_at)
                .where(Instance.state.in_(IN_FLIGHT), Instance.owner.is_not(None))):
            if owner_alive(cloud, owner, heartbeat):
                busy.add(instance_id)
        busy |= {instance_id for instance_id, worker, beat in jobs.running_for_instances(session)
                 if owner_alive(cloud, worker, beat)}
    return busy
