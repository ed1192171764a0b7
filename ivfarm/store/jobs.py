"""The queue is the store: jobs written with the API's decision, claimed by provisioners.

A job is ``queued`` (written in the same transaction as the instance's state change), then
``running`` (claimed by one worker, which renews ``heartbeat_at``), then ``done`` or ``failed``.
A running job whose heartbeat is older than the lapse is claimed again by another worker; the
old worker's finish then no longer matches (``worker`` changed) and is refused.

Claims are fair: stops and terminations go first, then farms take turns (the farm with the fewest
running jobs, then the one whose oldest queued job is oldest), within per-host and per-farm limits.
PostgreSQL claims lock candidate rows ``FOR UPDATE SKIP LOCKED`` so concurrent workers never take
the same job; SQLite writers are serialised already.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from ivfarm.store.models import IN_FLIGHT, Instance, Job, utcnow
from ivfarm.store.session import Store

CHANNEL = "ivfarm_jobs"  # PostgreSQL NOTIFY channel woken by every enqueue
URGENT = ("stop", "terminate")  # never wait behind launches
ROUTER_SYNC = "router-sync"
CANDIDATES = 1000  # queued rows a claim looks at
PER_KIND = 32  # of them, at most this many of one farm and kind (its oldest)


@dataclass(frozen=True)
class Limits:
    """How many jobs may run at once on one host and for one farm."""

    per_host: int
    per_farm: int


@dataclass(frozen=True)
class Claimed:
    """A job a worker now owns."""

    id: int
    kind: str
    instance_id: str | None
    farm_id: int | None
    payload: dict[str, Any]


def enqueue(session: Session, kind: str, *, instance_id: str | None = None, farm_id: int | None = None,
            host_id: int | None = None, payload: dict[str, Any] | None = None) -> None:
    """Queue a job in the caller's transaction; a router sync already queued for the farm absorbs this one."""
    if kind == ROUTER_SYNC and session.scalar(select(Job.id).where(
            Job.kind == ROUTER_SYNC, Job.farm_id == farm_id, Job.state == "queued")) is not None:
        return
    session.add(Job(kind=kind, instance_id=instance_id, farm_id=farm_id, host_id=host_id, payload=payload or {},
                    state="queued", attempts=0, error="", created_at=utcnow()))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def enqueue_many(session: Session, kind: str, rows: list[dict[str, Any]]) -> None:
    """Queue one job of ``kind`` per row (``instance_id``, ``farm_id``, ``host_id``, ``payload``) in
    one INSERT of the caller's transaction (a launch of 100 instances is one statement)."""
    if not rows:
        return
    now = utcnow()
    session.execute(insert(Job), [{"kind": kind, "state": "queued", "attempts": 0, "error": "", "created_at": now,
                                   "instance_id": None, "farm_id": None, "host_id": None, "payload": {}, **row}
                                  for row in rows])
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def _order(jobs: Sequence[Any], running: Sequence[Any]) -> list[Any]:
    """Candidates (rows with id, kind, farm_id) in fair order: urgent kinds first, then farms with
    the fewest running jobs, then round-robin (each farm's n-th queued job before any farm's n+1-th),
    then age."""
    busy = Counter(job.farm_id for job in running)
    seen: Counter[int | None] = Counter()
    position: dict[int, int] = {}
    for job in sorted(jobs, key=lambda j: j.id):
        position[job.id] = seen[job.farm_id]
        seen[job.farm_id] += 1
    return sorted(jobs, key=lambda j: (j.kind not in URGENT, busy[j.farm_id], position[j.id], j.id))


def claim(store: Store, worker: str, limits: Limits, lapse: dt.timedelta) -> Claimed | None:
    """Take the next job this worker may run (a queued one, or one whose worker's heartbeat lapsed)."""
    now = utcnow()
    with store.write() as session:
        stale = now - lapse
        # Plain rows, not ORM objects, and only the first PER_KIND of each farm and kind: the only
        # ones that can come first in fair order (later ones wait behind them), so a claim reads a
        # few dozen rows whatever the depth of the queue.
        waiting = or_(Job.state == "queued", (Job.state == "running") & (Job.heartbeat_at < stale))
        ranked = select(Job.id, func.row_number().over(partition_by=(Job.farm_id, Job.kind), order_by=Job.id)
                        .label("rank")).where(waiting).subquery()
        stmt = (select(Job.id, Job.kind, Job.state, Job.farm_id, Job.host_id, Job.worker, Job.attempts)
                .join(ranked, ranked.c.id == Job.id).where(ranked.c.rank <= PER_KIND)
                .order_by(Job.id).limit(CANDIDATES))
        if not store.is_sqlite:
            stmt = stmt.with_for_update(of=Job, skip_locked=True)
        candidates = session.execute(stmt).all()
        running = session.execute(select(Job.farm_id, Job.host_id).where(
            Job.state == "running", Job.heartbeat_at >= stale)).all()
        per_host = Counter(job.host_id for job in running)
        per_farm = Counter(job.farm_id for job in running)
        for job in _order(candidates, running):
            if job.host_id is not None and per_host[job.host_id] >= limits.per_host:
                continue
            if job.farm_id is not None and per_farm[job.farm_id] >= limits.per_farm:
                continue
            guard = [Job.worker == job.worker, Job.heartbeat_at < stale] if job.state == "running" else []
            taken = session.execute(update(Job).where(Job.id == job.id, Job.state == job.state, *guard)
                                    .values(state="running", worker=worker, heartbeat_at=now, attempts=job.attempts + 1)
                                    .execution_options(synchronize_session=False))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                instance_id, payload = session.execute(select(Job.instance_id, Job.payload).where(Job.id == job.id)).one()
                return Claimed(job.id, job.kind, instance_id, job.farm_id, dict(payload))
    return None


def renew(store: Store, worker: str) -> int:
    """Refresh the heartbeat of every job ``worker`` runs; returns how many."""
    with store.read() as session:
        done = session.execute(update(Job).where(Job.state == "running", Job.worker == worker)
                               .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        return int(done.rowcount)  # type: ignore[attr-defined]


def finish(store: Store, job_id: int, worker: str, error: str = "") -> bool:
    """Mark a job done (or failed with ``error``); False if another worker took it over meanwhile.

    A failed job that left its instance in flight (a stop whose host was unreachable) gives up the
    claim of the process that decided it, unless another job of the instance waits: nobody works on
    it any more, so ``reconcile`` may repair it even while that process (the API) lives on."""
    with store.write() as session:
        done = session.execute(update(Job).where(Job.id == job_id, Job.state == "running", Job.worker == worker)
                               .values(state="failed" if error else "done", error=error[:4000],
                                       finished_at=utcnow(), heartbeat_at=None)
                               .execution_options(synchronize_session=False))
        if error and done.rowcount == 1:  # type: ignore[attr-defined]
            instance_id = session.scalar(select(Job.instance_id).where(Job.id == job_id))
            waiting = select(Job.id).where(Job.instance_id == instance_id, Job.state.in_(("queued", "running")))
            session.execute(update(Instance).where(Instance.id == instance_id, Instance.state.in_(IN_FLIGHT),
                                                   ~waiting.exists())
                            .values(owner=None, heartbeat_at=None).execution_options(synchronize_session=False))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def outstanding(store: Store, instance_ids: list[str] | None = None) -> int:
    """Jobs queued or running (of these instances)."""
    with store.read() as session:
        stmt = select(Job.id).where(Job.state.in_(("queued", "running")))
        if instance_ids is not None:
            stmt = stmt.where(Job.instance_id.in_(instance_ids))
        return len(list(session.scalars(stmt)))


def running_for_instances(session: Session, instance_id: str | None = None) -> list[tuple[str, str, dt.datetime | None]]:
    """(instance, worker, heartbeat) of each running job of an instance in flight (of ``instance_id``); while a
    job is only queued, the instance's owner (the process that decided it) stands for it."""
    stmt = select(Job.instance_id, Job.worker, Job.heartbeat_at).join(Instance, Instance.id == Job.instance_id).where(
        Instance.state.in_(IN_FLIGHT), Job.state == "running")
    if instance_id is not None:
        stmt = stmt.where(Job.instance_id == instance_id)
    return [(str(i), str(w), h) for i, w, h in session.execute(stmt)]
