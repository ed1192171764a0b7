"""``vm migrate`` and ``host drain``: moving instances between hosts of their class.

- live: a running service-class instance on shared storage moves with libvirt's peer-to-peer
  migration; its seed and console log are put on the target first, the guest never stops.
- cold: anything else (worker instances, stopped ones): shut down, disks moved by the storage
  backend (a stream copy between hosts' pools; nothing to move on shared storage), the domain
  defined on the target from the store, started again if it was running.
The store records the target when the move starts (holding its capacity) and the source again
if the move fails before the instance could run on the target.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from drivers.storage.base import Disk, disk_names
from ivfarm.errors import HypervisorError, InvalidState, IvfarmError, TransitionLost
from ivfarm.services.compute import hosts, provisioning, volume_records
from ivfarm.services.compute.instances import domain_name, set_state
from ivfarm.services.compute.placement import Move, place_on, reserve
from ivfarm.services.network import firewall
from ivfarm.services.network.segment_peers import sync_segment
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import LIVE_STATES, Instance
from ivfarm.store.states import InstanceState as S

log = logging.getLogger(__name__)
MOVABLE = ("running", "stopped")


@dataclass
class MigrationResult:
    instance_id: str
    source: str
    target: str
    mode: str  # live | cold
    seconds: float
    state: str  # the instance's state afterwards


@dataclass
class DrainReport:
    host: str
    moved: list[MigrationResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # instance id -> error
    skipped: dict[str, str] = field(default_factory=dict)  # instance id -> why (busy states)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _mode(cloud: CloudContext, move: Move) -> str:
    live = (move.host_class == "service" and move.state == "running" and cloud.storage("service").shared
            and cloud.hypervisor.features(move.source_uri).live_migration)
    return "live" if live else "cold"


def migrate(cloud: CloudContext, instance_id: str, to: str | None = None) -> MigrationResult:
    """Move an instance to host ``to`` or to the scheduler's choice; returns what was done."""
    with cloud.store.read() as session:  # migrations do not carry volumes (docs/ec2.md)
        if volume_records.attached_volumes(session, instance_id):
            raise InvalidState(f"instance {instance_id} has volumes attached: detach them before moving it")
    started = time.monotonic()
    with journal.operation(cloud, "migrate", instance_id):
        move = reserve(cloud, instance_id, to, MOVABLE)
        try:
            mode = _mode(cloud, move)
        except IvfarmError:
            place_on(cloud, instance_id, move.source)
            raise
        try:
            if mode == "live":
                _live(cloud, move)
            else:
                _cold(cloud, move)
        except TransitionLost as lost:  # terminated meanwhile: nothing of it may stay on either host
            if lost.found in (S.SHUTTING_DOWN, S.TERMINATED):
                _abandon(cloud, move)
            _follow_quietly(cloud, instance_id)
            raise
        except Exception:
            _follow_quietly(cloud, instance_id)  # back on its source: the forwarding goes back too
            raise
        _follow(cloud, instance_id)
    state = "running" if move.state == "running" else "stopped"
    return MigrationResult(instance_id, move.source, move.target, mode, round(time.monotonic() - started, 3), state)


def _follow(cloud: CloudContext, instance_id: str) -> None:
    """The farm segment's forwarding follows the instance to the host the store now names."""
    with cloud.store.read() as session:
        farm_id = session.scalar(select(Instance.farm_id).where(Instance.id == instance_id))
    if farm_id is not None:
        sync_segment(cloud, farm_id)


def _follow_quietly(cloud: CloudContext, instance_id: str) -> None:
    try:
        _follow(cloud, instance_id)
    except IvfarmError:
        log.exception("the segment's forwarding did not follow %s", instance_id)


def _carry_console(cloud: CloudContext, move: Move) -> None:
    log_name = f"{move.instance_id}.log"
    data = cloud.consoles.read(move.source_uri, log_name)
    cloud.consoles.ensure_directory(move.target_uri)
    if data:
        cloud.consoles.write(move.target_uri, log_name, data)


def _clean_source(cloud: CloudContext, move: Move) -> None:
    """Remove what the instance left on its former host (best effort: the move itself succeeded)."""
    for step in (lambda: cloud.hypervisor.undefine(move.source_uri, domain_name(move.instance_id)),
                 lambda: cloud.seeds.delete(move.source_uri, f"{move.instance_id}.iso"),
                 lambda: cloud.consoles.delete(move.source_uri, f"{move.instance_id}.log"),
                 lambda: firewall.remove(cloud, move.source_uri, move.instance_id)):
        try:
            step()
        except IvfarmError:
            log.exception("cleaning %s of %s failed", move.source, move.instance_id)


def _live(cloud: CloudContext, move: Move) -> None:
    name = domain_name(move.instance_id)
    try:
        storage = cloud.storage(move.host_class)
        storage.disk(move.target_uri, disk_names(move.instance_id)[0])  # the shared volume is mounted there
        provisioning.prepare_host(cloud, move.instance_id)
        _carry_console(cloud, move)
        cloud.hypervisor.migrate(move.source_uri, name, move.target_peer_uri, live=True,
                                 vouched_shared=storage.vouched_shared)
    except Exception:
        try:
            landed = cloud.hypervisor.status(move.target_uri, name)
        except HypervisorError:
            landed = None
        if landed is None or landed.state != "running":
            place_on(cloud, move.instance_id, move.source)
            cloud.seeds.delete(move.target_uri, f"{move.instance_id}.iso")
            raise
    _clean_source(cloud, move)
    _still_wanted(cloud, move)


def _still_wanted(cloud: CloudContext, move: Move) -> None:
    """A live move changes no state; one that landed after a terminate began gives way to it."""
    with cloud.store.read() as session:
        state = session.scalar(select(Instance.state).where(Instance.id == move.instance_id))
    if state in (S.SHUTTING_DOWN, S.TERMINATED):
        raise TransitionLost(move.instance_id, str(state), move.state)


def _abandon(cloud: CloudContext, move: Move) -> None:
    """Remove the instance from both hosts of a move a terminate overtook (best effort: the
    terminate removes what it knows of, reconcile any rest)."""
    storage = cloud.storage(move.host_class)
    name = move.instance_id
    for uri in (move.source_uri, move.target_uri):
        steps: list[Callable[[], None]] = [
            functools.partial(cloud.hypervisor.undefine, uri, domain_name(name)),
            functools.partial(cloud.seeds.delete, uri, f"{name}.iso"),
            functools.partial(cloud.consoles.delete, uri, f"{name}.log")]
        if not storage.shared or uri == move.target_uri:
            steps += [functools.partial(storage.delete, uri, disk) for disk in disk_names(name)]
        for step in steps:
            try:
                step()
            except IvfarmError:
                log.exception("removing %s from %s after its termination failed", move.instance_id, uri)


def _move_disks(cloud: CloudContext, move: Move, names: list[str], src: str, dst: str, moved: list[str]) -> list[Disk]:
    """Move the named disks that exist on ``src``; ``moved`` records each one as soon as it is on ``dst``."""
    storage = cloud.storage(move.host_class)
    disks = []
    for name in names:
        if storage.exists(src, name):
            disks.append(storage.move(src, name, dst))
            moved.append(name)
    return disks


def _check_backing(cloud: CloudContext, move: Move) -> None:
    """Overlays name their base image's path: it must be the same on both hosts (and cached on the target)."""
    storage = cloud.storage(move.host_class)
    if not storage.backing_files or storage.shared:
        return
    base = provisioning.base_image(cloud, move.instance_id)
    here, there = storage.prepare_image(move.source_uri, base).path, storage.prepare_image(move.target_uri, base).path
    if here != there:
        raise InvalidState(f"{move.instance_id}'s base image is at {here} on {move.source} but at {there} on "
                           f"{move.target}: give both hosts the same cache directory to move overlays between them")


def _cold(cloud: CloudContext, move: Move) -> None:
    name = domain_name(move.instance_id)
    was_running = move.state == "running"
    moved: list[str] = []
    try:
        _check_backing(cloud, move)
        if was_running:
            set_state(cloud, move.instance_id, S.STOPPING, f"Migrating to {move.target}", expect=(S.RUNNING,))
            cloud.hypervisor.stop(move.source_uri, name, timeout_s=float(cloud.config.get("hypervisor.shutdown_timeout_s")))
        set_state(cloud, move.instance_id, S.STOPPED, f"Migrating to {move.target}", expect=(S.STOPPING, S.STOPPED))
        disks = _move_disks(cloud, move, list(disk_names(move.instance_id)), move.source_uri, move.target_uri, moved)
        _carry_console(cloud, move)
        provisioning.redefine(cloud, move.instance_id, disks, start=was_running)
    except TransitionLost as lost:  # a terminate overtook the move (migrate removes it all) or another change
        if lost.found not in (S.SHUTTING_DOWN, S.TERMINATED):
            _undo_cold(cloud, move, moved, lost)
        raise
    except Exception as exc:
        _undo_cold(cloud, move, moved, exc)
        raise
    set_state(cloud, move.instance_id, S.RUNNING if was_running else S.STOPPED, expect=(S.STOPPED,))
    _clean_source(cloud, move)


def _undo_cold(cloud: CloudContext, move: Move, moved: list[str], error: Exception) -> None:
    """Put the instance back on its source as it was; if its disks cannot go back, leave it stopped on the target."""
    reason = f"Server.MigrationFailed: {error}"[:250]
    if moved and not cloud.storage(move.host_class).shared:
        try:
            _move_disks(cloud, move, moved, move.target_uri, move.source_uri, [])
        except IvfarmError:
            log.exception("moving the disks of %s back failed", move.instance_id)
            set_state(cloud, move.instance_id, S.STOPPED, reason, expect=(S.STOPPING, S.STOPPED))
            return
    place_on(cloud, move.instance_id, move.source)
    if move.state == "running":
        try:
            cloud.hypervisor.start(move.source_uri, domain_name(move.instance_id))
            set_state(cloud, move.instance_id, S.RUNNING, reason, expect=(S.STOPPING, S.STOPPED, S.RUNNING))
            return
        except HypervisorError:
            log.exception("restarting %s on %s failed", move.instance_id, move.source)
    set_state(cloud, move.instance_id, S.STOPPED, reason, expect=(S.STOPPING, S.STOPPED))


def drain(cloud: CloudContext, host_name: str, on_result: Callable[[str, MigrationResult | str], None] | None = None) -> DrainReport:
    """Disable the host and move every instance off it (live or cold as fits); report each one."""
    hosts.set_enabled(cloud, host_name, False)
    report = DrainReport(host_name)
    with cloud.store.read() as session:
        host = hosts.get_host(session, host_name)
        rows = [(i.id, i.state) for i in session.scalars(
            select(Instance).where(Instance.host_id == host.id, Instance.state.in_(LIVE_STATES)).order_by(Instance.id))]
    for instance_id, state in rows:
        if state not in MOVABLE:
            report.skipped[instance_id] = f"{state}: run drain again once it settles"
            outcome: MigrationResult | str = report.skipped[instance_id]
        else:
            try:
                outcome = migrate(cloud, instance_id)
                report.moved.append(outcome)
            except IvfarmError as exc:
                report.failed[instance_id] = outcome = str(exc)
        if on_result is not None:
            on_result(instance_id, outcome)
    return report
