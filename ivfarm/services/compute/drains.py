"""Graceful draining: announce a shutdown time, then move or end the VMs once it has passed.

``drain_host`` disables a host and records a ``drains`` row whose deadline is now + grace; the
farm routers republish their Machine/Job Features at once, so every VM on the host reads
``shutdowntime`` (pilots stop taking jobs). ``drain_instance`` does the same for one VM. Once the
deadline has passed, ``process_due`` (called by ``ivfarm reconcile``) migrates service VMs (live
where they can) and terminates or stops worker VMs (``hosts.drain_worker_policy``); a VM drained
by itself is terminated. A drain is done when nothing of it is left; what failed or was busy is
retried on the next pass. ``cancel`` ends a drain before then, clears ``shutdowntime`` and gives
the host back its scheduling state.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ivfarm.errors import InvalidInput, InvalidState, IvfarmError
from ivfarm.services.compute import instances, migration, provisioning
from ivfarm.services.compute.hosts import get_host
from ivfarm.services.network.routers import publish_metadata
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import LIVE_STATES, Drain, Host, Instance, utcnow
from ivfarm.store.states import InstanceState as S

log = logging.getLogger(__name__)
MAX_GRACE_S = 30 * 24 * 3600


@dataclass
class DrainView:
    """A drain as the CLI shows it; ``warnings`` are routers that could not be told (reconcile retries)."""

    id: int
    target: str  # host NAME or instance id
    state: str
    grace_s: int
    deadline: dt.datetime
    result: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class DueReport:
    """What one pass over the drains whose deadline has passed did (or would do)."""

    finished: list[DrainView] = field(default_factory=list)
    pending: list[DrainView] = field(default_factory=list)  # something failed or was busy: next pass


def _view(drain: Drain, target: str) -> DrainView:
    return DrainView(drain.id, target, drain.state, drain.grace_s, drain.deadline, dict(drain.result or {}))


def _check_grace(grace_s: int) -> None:
    if not 0 < grace_s <= MAX_GRACE_S:
        raise InvalidInput(f"the grace must be between 1 second and {MAX_GRACE_S // 86400} days, not {grace_s} s")


def _publish(cloud: CloudContext, farm_ids: set[int]) -> list[str]:
    """Tell the farms' routers (best effort: a failure is reported, reconcile republishes)."""
    warnings = []
    for farm_id in sorted(farm_ids):
        try:
            publish_metadata(cloud, farm_id)
        except IvfarmError as exc:
            warnings.append(str(exc))
    return warnings


def _farms_on_host(session: Session, host_id: int) -> set[int]:
    return {f for f in session.scalars(select(Instance.farm_id).where(
        Instance.host_id == host_id, Instance.state.in_(LIVE_STATES), Instance.farm_id.is_not(None))) if f is not None}


def active_host_drain(session: Session, host_id: int) -> Drain | None:
    """The host's drain in progress, if any."""
    return session.scalar(select(Drain).where(Drain.host_id == host_id, Drain.state == "active"))


def _lock(session: Session, model: type[Host] | type[Instance], key: int | str) -> None:
    """Hold the row until the transaction ends (PostgreSQL; SQLite writers are serialised anyway)."""
    session.execute(select(model.id).where(model.id == key).with_for_update())


def drain_host(cloud: CloudContext, host_name: str, grace_s: int) -> DrainView:
    """Disable the host and give its VMs ``grace_s`` seconds' notice (their ``shutdowntime``)."""
    _check_grace(grace_s)
    with cloud.store.write() as session:
        host = get_host(session, host_name)
        _lock(session, Host, host.id)  # two drains of one host at once: the second finds the first
        current = active_host_drain(session, host.id)
        if current is not None:
            raise InvalidState(f"host {host_name} is already draining until {current.deadline:%Y-%m-%d %H:%M:%S} UTC: "
                               f"cancel it first (ivfarm host drain {host_name} --cancel)")
        drain = Drain(host_id=host.id, grace_s=grace_s, deadline=utcnow() + dt.timedelta(seconds=grace_s),
                      host_was_enabled=host.enabled, result={})
        host.enabled = False
        session.add(drain)
        session.flush()
        view = _view(drain, host_name)
        farms = _farms_on_host(session, host.id)
    view.warnings = _publish(cloud, farms)
    return view


def drain_instance(cloud: CloudContext, instance_id: str, grace_s: int) -> DrainView:
    """Give one VM ``grace_s`` seconds' notice (its ``shutdowntime``), then terminate it."""
    _check_grace(grace_s)
    with cloud.store.write() as session:
        instance = instances.get_instance(session, instance_id)
        _lock(session, Instance, instance_id)
        if instance.state not in LIVE_STATES or instance.state == S.SHUTTING_DOWN:
            raise InvalidState(f"instance {instance_id} is {instance.state}: nothing to drain")
        current = session.scalar(select(Drain).where(Drain.instance_id == instance_id, Drain.state == "active"))
        if current is not None:
            raise InvalidState(f"instance {instance_id} already ends at {current.deadline:%Y-%m-%d %H:%M:%S} UTC: "
                               f"cancel it first (ivfarm vm terminate {instance_id} --cancel)")
        drain = Drain(instance_id=instance_id, grace_s=grace_s, deadline=utcnow() + dt.timedelta(seconds=grace_s),
                      result={})
        session.add(drain)
        session.flush()
        view = _view(drain, instance_id)
        farms = {instance.farm_id} if instance.farm_id is not None else set()
    view.warnings = _publish(cloud, farms)
    return view


def cancel_host_drain(cloud: CloudContext, host_name: str) -> DrainView:
    """End the host's drain in progress: ``shutdowntime`` goes away, the host is enabled again if it was."""
    with cloud.store.write() as session:
        host = get_host(session, host_name)
        drain = active_host_drain(session, host.id)
        if drain is None:
            raise InvalidState(f"host {host_name} is not draining")
        _finish(session, drain, "cancelled")
        host.enabled = drain.host_was_enabled
        view = _view(drain, host_name)
        farms = _farms_on_host(session, host.id)
    view.warnings = _publish(cloud, farms)
    return view


def cancel_instance_drain(cloud: CloudContext, instance_id: str) -> DrainView:
    """Take back a ``vm terminate --grace`` that has not happened yet."""
    with cloud.store.write() as session:
        instance = instances.get_instance(session, instance_id)
        drain = session.scalar(select(Drain).where(Drain.instance_id == instance_id, Drain.state == "active"))
        if drain is None:
            raise InvalidState(f"instance {instance_id} has no termination pending")
        _finish(session, drain, "cancelled")
        view = _view(drain, instance_id)
        farms = {instance.farm_id} if instance.farm_id is not None else set()
    view.warnings = _publish(cloud, farms)
    return view


def _finish(session: Session, drain: Drain, state: str) -> None:
    """Compare-and-set an active drain to done or cancelled (InvalidState if it changed meanwhile)."""
    now = utcnow()
    changed = session.execute(update(Drain).where(Drain.id == drain.id, Drain.state == "active")
                              .values(state=state, finished_at=now).execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidState(f"drain {drain.id} is no longer active")
    drain.state, drain.finished_at = state, now


def _still_active(cloud: CloudContext, drain_id: int) -> bool:
    with cloud.store.read() as session:
        return session.scalar(select(Drain.state).where(Drain.id == drain_id)) == "active"


def _end_one(cloud: CloudContext, instance: Instance, by_host: bool) -> tuple[str, bool]:
    """Migrate, terminate or stop one VM of a drain that is due; (what happened, settled?)."""
    state, instance_id = instance.state, instance.id
    if state not in migration.MOVABLE:
        return f"{state}: left for the next pass", False
    try:
        if not by_host:
            provisioning.terminate(cloud, instance_id)
            return "terminated", True
        if instance.host_class == "service":
            moved = migration.migrate(cloud, instance_id)
            return f"migrated {moved.mode} to {moved.target}", True
        if cloud.config.get("hosts.drain_worker_policy") == "stop":
            if state == S.RUNNING:
                instances.stop(cloud, instance_id)
            return "stopped", True
        provisioning.terminate(cloud, instance_id)
        return "terminated", True
    except IvfarmError as exc:
        return f"failed: {exc}", False


def process_due(cloud: CloudContext, now: dt.datetime | None = None, dry_run: bool = False) -> DueReport:
    """Act on every drain whose deadline is at or before ``now`` (default: the present)."""
    report = DueReport()
    with cloud.store.read() as session:
        due = list(session.scalars(select(Drain).where(Drain.state == "active", Drain.deadline <= (now or utcnow()))
                                   .order_by(Drain.deadline, Drain.id)))
        host_names = {h.id: h.name for h in session.scalars(select(Host))}
        work = []
        for drain in due:
            query = select(Instance).where(Instance.state.in_(LIVE_STATES)).order_by(Instance.id)
            query = query.where(Instance.host_id == drain.host_id) if drain.host_id is not None \
                else query.where(Instance.id == drain.instance_id)
            members = list(session.scalars(query))
            target = host_names.get(drain.host_id, "?") if drain.host_id is not None else str(drain.instance_id)
            work.append((drain, target, members))
        session.expunge_all()
    for drain, target, members in work:
        view = _view(drain, target)
        settled = True
        farms = {m.farm_id for m in members if m.farm_id is not None}
        for member in members:
            if dry_run:
                view.result[member.id] = "would be moved or ended"
                continue
            if not _still_active(cloud, drain.id):  # cancelled meanwhile: the rest stays
                view.state = "cancelled"
                break
            if drain.host_id is not None and member.host_class == "worker" and member.state == S.STOPPED \
                    and cloud.config.get("hosts.drain_worker_policy") == "stop":
                view.result[member.id] = "stopped"
                continue
            view.result[member.id], ok = _end_one(cloud, member, drain.host_id is not None)
            settled = settled and ok
        if not dry_run and view.state == "active":
            with cloud.store.write() as session:
                row = session.get(Drain, drain.id)
                if row is not None and row.state == "active":
                    row.result = {**(row.result or {}), **view.result}
                    if settled:
                        _finish(session, row, "done")
                        view.state = "done"
            view.warnings = _publish(cloud, farms)
        (report.finished if view.state != "active" else report.pending).append(view)
    return report
