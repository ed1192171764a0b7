"""Host failure: notice hosts that stay unreachable, fence them, recover their instances elsewhere.

``check_hosts(cloud, grace_s, dry_run)`` probes every host once (``ivfarm reconcile`` calls it,
under its lock). A host that does not answer is marked ``unreachable`` (``unreachable_since``);
one that answers again is marked ``up``. Once a host has been unreachable for ``grace_s``
seconds it fails over:

1. fencing: ``hosts.fence_command`` (split like a shell would, once; ``{name}`` and ``{uri}``
   replaced inside each argument, other braces kept; run without a shell) must exit 0 within
   ``hosts.fence_timeout_s``; the host is then ``fenced`` (no scheduling, no further
   checks) until ``ivfarm host enable``. Without a fence command, or if it fails, nothing is
   restarted or recreated: two copies of a VM must never run.
2. service instances on shared storage (``storage.service.backend: gluster``) are defined on another
   service host from the shared volume and started if they were running (``restarted``).
3. worker instances (and service instances on local storage) are marked failed: ``stopped`` with
   reason ``Server.HostFailure``; with ``hosts.worker_failure_policy: recreate`` (and a fenced host)
   they are built again from their image on another worker host, same id, IP and MAC (``recreated``).

The report (``FailureReport.as_dict()``)::

    {"dry_run": bool, "grace_s": float,
     "hosts": [{"host": str, "host_class": str, "reachable": bool, "error": str,
                "status": "up" | "unreachable" | "fenced",         # after this check
                "unreachable_since": ISO-8601 | None,
                "action": "none" | "recovered" | "waiting" | "failed-over" | "not-fenced",
                "fence": {"command": str, "exit_code": int | None, "output": str} | None,
                "instances": [{"instance_id": str, "host_class": str,
                               "action": "restarted" | "recreated" | "left" | "failed" | "busy",
                               "target": str | None, "detail": str}]}]}

With ``dry_run`` nothing is written, fenced or moved; ``action`` says what would happen and no
instance is listed.
"""
from __future__ import annotations

import datetime as dt
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from drivers.storage.base import disk_names
from ivfarm.errors import HypervisorError, InvalidInput, IvfarmError, TransitionLost
from ivfarm.services.compute import provisioning, volume_work
from ivfarm.services.compute.instances import set_state
from ivfarm.services.compute.placement import place_on, reserve
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import ACTIVE_STATES, LIVE_STATES, Host, Instance, utcnow
from ivfarm.store.states import InstanceState as S


@dataclass
class InstanceRecovery:
    instance_id: str
    host_class: str
    action: str
    target: str | None = None
    detail: str = ""


@dataclass
class HostCheck:
    host: str
    host_class: str
    reachable: bool
    status: str
    action: str = "none"
    unreachable_since: str | None = None
    error: str = ""
    fence: dict[str, object] | None = None
    instances: list[InstanceRecovery] = field(default_factory=list)


@dataclass
class FailureReport:
    dry_run: bool
    grace_s: float
    hosts: list[HostCheck] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _probe(cloud: CloudContext, uri: str) -> str:
    """An empty string when the host answers, else why not."""
    try:
        cloud.hypervisor.probe(uri)
        return ""
    except HypervisorError as exc:
        cloud.hypervisor.forget(uri)
        return str(exc)


def check_hosts(cloud: CloudContext, grace_s: float | None = None, dry_run: bool = False) -> FailureReport:
    """Probe every host; mark, fence and fail over those unreachable for longer than ``grace_s``."""
    grace = float(cloud.config.get("hosts.failure_grace_s") if grace_s is None else grace_s)
    report = FailureReport(dry_run, grace)
    with cloud.store.read() as session:
        rows = [(h.name, h.uri, h.host_class, h.status, h.unreachable_since)
                for h in session.scalars(select(Host).order_by(Host.name))]
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(rows)))) as pool:
        errors = list(pool.map(lambda row: _probe(cloud, row[1]), rows))
    now = utcnow()
    for (name, uri, host_class, status, since), error in zip(rows, errors, strict=True):
        check = HostCheck(name, host_class, not error, status, error=error)
        report.hosts.append(check)
        if status == "fenced":
            continue
        if not error:
            if status == "unreachable":
                check.status, check.action = "up", "recovered"
                _set_status(cloud, name, "up", None, dry_run)
            continue
        since = since or now
        check.status, check.unreachable_since = "unreachable", since.isoformat()
        if status != "unreachable":
            _set_status(cloud, name, "unreachable", since, dry_run)
        if (now - since).total_seconds() < grace:
            check.action = "waiting"
            continue
        _fail_over(cloud, check, uri, since, dry_run)
    return report


def _set_status(cloud: CloudContext, name: str, status: str, since: dt.datetime | None, dry_run: bool) -> None:
    if dry_run:
        return
    with cloud.store.write() as session:
        host = session.scalar(select(Host).where(Host.name == name))
        if host is not None:
            host.status, host.unreachable_since = status, since


def fence_argv(command: str, name: str, uri: str) -> list[str]:
    """The fence command's arguments with ``{name}`` and ``{uri}`` replaced; nothing else changes."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise InvalidInput(f"hosts.fence_command cannot be split: {exc}") from exc
    if not words:
        raise InvalidInput("hosts.fence_command is empty")
    return [word.replace("{name}", name).replace("{uri}", uri) for word in words]


def _fence(cloud: CloudContext, check: HostCheck, uri: str) -> bool:
    command = cloud.config.get("hosts.fence_command")
    if not command:
        check.fence = {"command": None, "exit_code": None, "output": "hosts.fence_command is not set"}
        return False
    try:
        argv = fence_argv(str(command), check.host, uri)
    except InvalidInput as exc:
        check.fence = {"command": str(command), "exit_code": None, "output": str(exc)}
        return False
    line = shlex.join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=float(cloud.config.get("hosts.fence_timeout_s")))
    except subprocess.TimeoutExpired:
        check.fence = {"command": line, "exit_code": None, "output": "timed out"}
        return False
    except OSError as exc:
        check.fence = {"command": line, "exit_code": None, "output": f"cannot run: {exc}"}
        return False
    check.fence = {"command": line, "exit_code": done.returncode, "output": (done.stdout + done.stderr)[-2000:]}
    return done.returncode == 0


def _fail_over(cloud: CloudContext, check: HostCheck, uri: str, since: dt.datetime, dry_run: bool) -> None:
    if dry_run:
        check.action = "failed-over" if cloud.config.get("hosts.fence_command") else "not-fenced"
        return
    fenced = _fence(cloud, check, uri)
    check.action = "failed-over" if fenced else "not-fenced"
    if fenced:
        check.status = "fenced"
        _set_status(cloud, check.host, "fenced", since, False)
    busy = journal.busy_targets(cloud)
    with cloud.store.read() as session:
        stranded = [(i.id, i.host_class, i.state) for i in session.scalars(
            select(Instance).join(Host, Instance.host_id == Host.id)
            .where(Host.name == check.host, Instance.state.in_(LIVE_STATES)).order_by(Instance.id))]
    for instance_id, host_class, state in stranded:
        if instance_id in busy or _busy_now(cloud, instance_id):
            check.instances.append(InstanceRecovery(instance_id, host_class, "busy", detail="an operation is in flight"))
            continue
        with journal.operation(cloud, "failover", instance_id):
            try:  # every step is a compare-and-set from the state read: a change meanwhile wins
                check.instances.append(_recover(cloud, check.host, instance_id, host_class, state, fenced))
            except TransitionLost as lost:
                check.instances.append(InstanceRecovery(instance_id, host_class, "busy", detail=f"changed meanwhile: {lost}"))


def _busy_now(cloud: CloudContext, instance_id: str) -> bool:
    """The busy list is a snapshot: ask again right before acting on the instance."""
    with cloud.store.read() as session:
        instance = session.get(Instance, instance_id)
        return instance is None or journal.instance_busy(cloud, session, instance)


def _recover(cloud: CloudContext, failed: str, instance_id: str, host_class: str, state: str, fenced: bool) -> InstanceRecovery:
    reason = "Server.HostFailure: the instance's host failed"  # tenants never learn host names
    active = state in ACTIVE_STATES
    policy = cloud.config.get("hosts.worker_failure_policy")
    if fenced and host_class == "service" and cloud.storage(host_class).shared and state != "shutting-down":
        return _restart(cloud, failed, instance_id, state, reason)
    if fenced and host_class == "worker" and policy == "recreate" and active:
        return _recreate(cloud, failed, instance_id, state, reason)
    if state == S.SHUTTING_DOWN:  # its teardown needs the host; a fenced host took it all down with it
        if not fenced:
            return InstanceRecovery(instance_id, host_class, "left", detail="shutting-down until its host answers")
        set_state(cloud, instance_id, S.TERMINATED, f"{reason}; terminated with it", expect=(S.SHUTTING_DOWN,))
        return InstanceRecovery(instance_id, host_class, "left", detail="marked terminated (fenced while shutting down)")
    set_state(cloud, instance_id, S.STOPPED, reason, expect=(state,))
    why = ("not fenced" if not fenced else "local storage" if host_class == "service"
           else "it was not running" if policy == "recreate" else f"worker_failure_policy {policy}")
    return InstanceRecovery(instance_id, host_class, "left", detail=f"marked stopped ({why})")


def _reserve(cloud: CloudContext, instance_id: str, host_class: str, state: str,
             reason: str) -> tuple[str, str] | InstanceRecovery:
    """(target name, target uri) held for the instance, or the failure (the instance marked stopped)."""
    try:
        move = reserve(cloud, instance_id, None, (state,))
    except TransitionLost:
        raise
    except IvfarmError as exc:
        set_state(cloud, instance_id, S.STOPPED, reason, expect=(state,))
        return InstanceRecovery(instance_id, host_class, "failed", detail=str(exc))
    return move.target, move.target_uri


def _restart(cloud: CloudContext, failed: str, instance_id: str, state: str, reason: str) -> InstanceRecovery:
    """Define the instance on another service host from the shared volume (and start it)."""
    was_running = state in ACTIVE_STATES
    reserved = _reserve(cloud, instance_id, "service", state, reason)
    if isinstance(reserved, InstanceRecovery):
        return reserved
    target, uri = reserved
    set_state(cloud, instance_id, S.PENDING if was_running else S.STOPPED, reason, expect=(state,))
    try:
        storage = cloud.storage("service")
        disks = [storage.disk(uri, n) for n in disk_names(instance_id) if storage.exists(uri, n)]
        provisioning.redefine(cloud, instance_id, disks, start=was_running)
    except IvfarmError as exc:
        place_on(cloud, instance_id, failed)
        set_state(cloud, instance_id, S.STOPPED, reason, expect=(S.PENDING, S.STOPPED))
        return InstanceRecovery(instance_id, "service", "failed", target, str(exc))
    set_state(cloud, instance_id, S.RUNNING if was_running else S.STOPPED, f"{reason}; restarted on another host",
              expect=(S.PENDING,) if was_running else (S.STOPPED,))
    return InstanceRecovery(instance_id, "service", "restarted", target, f"from the shared volume on {target}")


def _recreate(cloud: CloudContext, failed: str, instance_id: str, state: str, reason: str) -> InstanceRecovery:
    """Build the instance again from its image on another worker host (its disk is lost with the host)."""
    reserved = _reserve(cloud, instance_id, "worker", state, reason)
    if isinstance(reserved, InstanceRecovery):
        return reserved
    target = reserved[0]
    volume_work.leave_behind(cloud, instance_id)  # its volumes stay in the failed host's pool
    set_state(cloud, instance_id, S.PENDING, reason, expect=(state,))
    try:
        provisioning.provision(cloud, instance_id)
    except IvfarmError as exc:
        return InstanceRecovery(instance_id, "worker", "failed", target, f"recreating failed (terminated): {exc}")
    set_state(cloud, instance_id, S.RUNNING, f"{reason}; recreated on another host", expect=(S.RUNNING,))
    return InstanceRecovery(instance_id, "worker", "recreated", target, f"new root disk from its image on {target}")
