"""The disk work behind volume and snapshot decisions, run by provisioner jobs (never in the API).

Each step ends with a compare-and-set from the state the decision recorded; a failure removes what
the step made and puts the row back where it was (a failed create or snapshot: ``error``, no disk),
then raises, so the job is failed with the detail. A job re-run after a takeover finds the work
done (an attached disk, a made volume) or its row moved on, and gives way.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from drivers.hypervisor.domain_xml import VolumeDisk
from drivers.storage.base import Disk, Storage
from ivfarm.errors import InvalidState
from ivfarm.services.compute import volume_records as records
from ivfarm.services.compute.instances import domain_name, get_instance
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Host, Snapshot, Volume

log = logging.getLogger(__name__)
GIB = records.GIB
BACKUP_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class _Where:
    """A volume's (or snapshot's) row as the work needs it, and the host its pool is reached through."""

    row: Any
    uri: str
    storage: Storage


def _where(cloud: CloudContext, model: type[Volume] | type[Snapshot], ident: str, expect: tuple[str, ...]) -> _Where:
    with cloud.store.read() as session:
        row: Any = session.get(model, ident)
        if row is None or row.state not in expect:
            raise InvalidState(f"{ident} is {row.state if row else 'gone'}, not {' or '.join(expect)}")
        storage = cloud.storage(row.host_class)
        host = records.access_host(session, row.host_class, row.host_id, storage.shared)
        if host is None:
            raise InvalidState(f"no host of class {row.host_class} reaches the storage of {ident}")
        session.expunge(row)
        return _Where(row, host.uri, storage)


def _undo_on_failure(step: Callable[[], None], undo: Callable[[], None]) -> None:
    try:
        step()
    except Exception:
        try:
            undo()
        except Exception:  # noqa: BLE001 - the first failure is the one reported
            log.exception("undoing a failed volume step failed")
        raise


def create(cloud: CloudContext, volume_id: str) -> None:
    """Make a creating volume's disk (blank, or a copy of its snapshot), then ``available``."""
    where = _where(cloud, Volume, volume_id, ("creating",))
    volume = where.row

    def make() -> None:
        _make_disk(cloud, where.storage, where.uri, volume)
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("creating",), state="available", made=True)

    def undo() -> None:
        where.storage.delete(where.uri, records.disk_name(volume_id))
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("creating",), state="error")

    _undo_on_failure(make, undo)


def _make_disk(cloud: CloudContext, storage: Storage, uri: str, volume: Volume) -> Disk:
    """The volume's disk, made in the pool on ``uri``: a copy of its snapshot or a blank disk."""
    size = volume.size_gb * GIB
    if volume.snapshot_id:
        with cloud.store.read() as session:
            made = session.scalar(select(Snapshot.made).where(Snapshot.id == volume.snapshot_id))
        if made:
            return storage.copy(uri, records.disk_name(volume.snapshot_id), records.disk_name(volume.id), size)
    return storage.create_blank(uri, records.disk_name(volume.id), size)


def delete(cloud: CloudContext, volume_id: str) -> None:
    """Remove a deleting volume's disk, then ``deleted``."""
    where = _where(cloud, Volume, volume_id, ("deleting",))
    where.storage.delete(where.uri, records.disk_name(volume_id))
    with cloud.store.write() as session:
        records.set_volume(session, volume_id, ("deleting",), state="deleted", host_id=None)


def _instance_uri(cloud: CloudContext, instance_id: str) -> str:
    with cloud.store.read() as session:
        instance = get_instance(session, instance_id)
        if instance.host is None:
            raise InvalidState(f"instance {instance_id} is on no host")
        return instance.host.uri


def attach(cloud: CloudContext, volume_id: str) -> None:
    """Hot-plug (or add to the definition of a stopped instance) an attaching volume's disk, making it
    first on the instance's host when it is not made yet; then ``attached``."""
    where = _where(cloud, Volume, volume_id, ("in-use",))
    volume = where.row
    if volume.attach_state != "attaching" or volume.instance_id is None or volume.device is None:
        raise InvalidState(f"volume {volume_id} is {volume.attach_state or 'not attached'}, not attaching")
    uri = _instance_uri(cloud, volume.instance_id)  # its pool, shared or not, as the instance's host reaches it
    made_here = not volume.made
    target = records.device_target(volume.device)

    def plug() -> None:
        disk = _make_disk(cloud, where.storage, uri, volume) if made_here else where.storage.disk(uri, records.disk_name(volume_id))
        cloud.hypervisor.attach_disk(uri, domain_name(volume.instance_id), disk, target)
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("in-use",), attach=("attaching",), attach_state="attached",
                               made=True)

    def undo() -> None:
        cloud.hypervisor.detach_disk(uri, domain_name(volume.instance_id), target, _detach_timeout(cloud))
        if made_here:
            where.storage.delete(uri, records.disk_name(volume_id))
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("in-use",), attach=("attaching",), state="available",
                               instance_id=None, device=None, attach_state=None, attach_time=None,
                               host_id=volume.host_id if volume.made else None)

    _undo_on_failure(plug, undo)


def _detach_timeout(cloud: CloudContext) -> float:
    return float(cloud.config.get("hypervisor.detach_timeout_s"))


def detach(cloud: CloudContext, volume_id: str, force: bool = False) -> None:
    """Unplug a detaching volume from its instance, then ``available``. ``force`` (EC2's Force) only
    goes on when the instance's domain is gone; a guest that keeps the device fails the detach,
    which then leaves the volume attached."""
    where = _where(cloud, Volume, volume_id, ("in-use",))
    volume = where.row
    if volume.attach_state != "detaching" or volume.instance_id is None or volume.device is None:
        raise InvalidState(f"volume {volume_id} is {volume.attach_state or 'not attached'}, not detaching")
    uri = _instance_uri(cloud, volume.instance_id)
    name = domain_name(volume.instance_id)

    def unplug() -> None:
        if cloud.hypervisor.status(uri, name) is not None or not force:
            cloud.hypervisor.detach_disk(uri, name, records.device_target(str(volume.device)), _detach_timeout(cloud))
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("in-use",), attach=("detaching",), state="available",
                               instance_id=None, device=None, attach_state=None, attach_time=None)

    def undo() -> None:
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("in-use",), attach=("detaching",), attach_state="attached")

    _undo_on_failure(unplug, undo)


def resize(cloud: CloudContext, volume_id: str, before_gb: int) -> None:
    """Grow a volume's disk to its recorded size (through the running guest's hypervisor when it is
    attached to one); on failure the recorded size goes back to ``before_gb``."""
    where = _where(cloud, Volume, volume_id, ("available", "in-use"))
    volume = where.row
    size = volume.size_gb * GIB

    def grow() -> None:
        if volume.instance_id and volume.device:
            uri = _instance_uri(cloud, volume.instance_id)
            status = cloud.hypervisor.status(uri, domain_name(volume.instance_id))
            if status is not None and status.state == "running" and cloud.hypervisor.features(uri).hotplug:
                cloud.hypervisor.resize_disk(uri, domain_name(volume.instance_id),
                                             records.device_target(volume.device), size)
                return
        if cloud.hypervisor.features(where.uri).storage_resize:
            where.storage.resize(where.uri, records.disk_name(volume_id), size)
        else:  # libvirt's test driver holds no data and cannot resize: the size is recorded only
            log.info("volume %s: %s cannot resize volumes; size recorded only", volume_id, where.uri)

    def undo() -> None:
        with cloud.store.write() as session:
            records.set_volume(session, volume_id, ("available", "in-use"), size_gb=before_gb)

    _undo_on_failure(grow, undo)


def snapshot(cloud: CloudContext, snapshot_id: str) -> None:
    """Copy a pending snapshot's volume (crash-consistent: a copy of the disk as it is, also while a
    guest writes to it), then ``completed``."""
    where = _where(cloud, Snapshot, snapshot_id, ("pending",))
    snap = where.row
    name = records.disk_name(snapshot_id)

    def copy() -> None:
        running = _running_attachment(cloud, snap.volume_id)
        if running is None:  # nothing writes to it: a copy of the file (qemu-img convert by libvirt)
            where.storage.copy(where.uri, records.disk_name(snap.volume_id), name, snap.size_gb * GIB)
        else:  # the guest's QEMU copies the disk as it is now (libvirt push backup) while the guest goes on
            uri, domain, target = running
            dest = where.storage.create_blank(uri, name, snap.size_gb * GIB)
            cloud.hypervisor.backup_disk(uri, domain, target, dest.path, BACKUP_TIMEOUT_S)
        with cloud.store.write() as session:
            records.set_snapshot(session, snapshot_id, ("pending",), state="completed", made=True, progress=100)

    def undo() -> None:
        where.storage.delete(where.uri, name)
        with cloud.store.write() as session:
            records.set_snapshot(session, snapshot_id, ("pending",), state="error")

    _undo_on_failure(copy, undo)


def _running_attachment(cloud: CloudContext, volume_id: str) -> tuple[str, str, str] | None:
    """(host URI, domain, target) when the volume is attached to a running guest that can copy it live."""
    with cloud.store.read() as session:
        volume = session.get(Volume, volume_id)
        if volume is None or volume.instance_id is None or volume.device is None or volume.attach_state != "attached":
            return None
        instance_id, target = volume.instance_id, records.device_target(volume.device)
    uri = _instance_uri(cloud, instance_id)
    status = cloud.hypervisor.status(uri, domain_name(instance_id))
    if status is None or status.state != "running" or not cloud.hypervisor.features(uri).hotplug:
        return None
    return uri, domain_name(instance_id), target


def delete_snapshot(cloud: CloudContext, snapshot_id: str) -> None:
    """Remove a deleting snapshot's copy, then ``deleted``."""
    where = _where(cloud, Snapshot, snapshot_id, ("deleting",))
    where.storage.delete(where.uri, records.disk_name(snapshot_id))
    with cloud.store.write() as session:
        records.set_snapshot(session, snapshot_id, ("deleting",), state="deleted")


def run(cloud: CloudContext, kind: str, payload: dict[str, Any]) -> None:
    """Carry out one volume or snapshot job."""
    ident = str(payload["id"])
    steps: dict[str, Callable[[], None]] = {
        "volume-create": lambda: create(cloud, ident),
        "volume-delete": lambda: delete(cloud, ident),
        "volume-attach": lambda: attach(cloud, ident),
        "volume-detach": lambda: detach(cloud, ident, bool(payload.get("force"))),
        "volume-resize": lambda: resize(cloud, ident, int(payload.get("before", 0))),
        "snapshot-create": lambda: snapshot(cloud, ident),
        "snapshot-delete": lambda: delete_snapshot(cloud, ident),
    }
    steps[kind]()


# -- an instance's own volumes: launch, redefinition, termination ------------------------------
def attached_disks(cloud: CloudContext, instance_id: str, uri: str) -> list[VolumeDisk]:
    """The made volumes attached to an instance that the host on ``uri`` reaches, as domain disks
    (a redefinition keeps them)."""
    with cloud.store.read() as session:
        rows = [(v.id, v.device, v.host_class, v.host_id) for v in records.attached_volumes(session, instance_id)
                if v.made and v.device and v.attach_state == "attached"]
        host_id = session.scalar(select(Host.id).where(Host.uri == uri))
    disks = []
    for volume_id, device, host_class, volume_host in rows:
        storage = cloud.storage(host_class)
        if storage.shared or volume_host == host_id:
            disks.append(VolumeDisk(storage.disk(uri, records.disk_name(volume_id)), records.device_target(device)))
    return disks


def build_for_launch(cloud: CloudContext, instance_id: str, uri: str, undo: list[Callable[[], None]]) -> list[VolumeDisk]:
    """Make the disks of the volumes RunInstances' block device mapping asked for (``creating``,
    ``attaching``) on the instance's host; each registers its removal in ``undo``."""
    with cloud.store.read() as session:
        wanted = [v for v in records.attached_volumes(session, instance_id) if v.state == "creating"]
        for volume in wanted:
            session.expunge(volume)
    disks = []
    for volume in wanted:
        storage = cloud.storage(volume.host_class)
        disk = _make_disk(cloud, storage, uri, volume)
        undo.append(_remover(storage, uri, disk.name))
        disks.append(VolumeDisk(disk, records.device_target(str(volume.device))))
    return disks


def _remover(storage: Storage, uri: str, name: str) -> Callable[[], None]:
    return lambda: storage.delete(uri, name)


def launched(cloud: CloudContext, instance_id: str, ok: bool) -> None:
    """After provisioning: the launch's volumes are ``in-use``/``attached`` (ok) or gone (failed)."""
    with cloud.store.write() as session:
        for volume in records.attached_volumes(session, instance_id):
            if volume.state != "creating":
                continue
            if ok:
                records.set_volume(session, volume.id, ("creating",), state="in-use", attach_state="attached", made=True)
            else:
                records.set_volume(session, volume.id, ("creating",), state="deleted", instance_id=None, device=None,
                                   attach_state=None, made=False)


def leave_behind(cloud: CloudContext, instance_id: str) -> None:
    """Detach (in the store) the volumes of an instance rebuilt on another host after its own failed:
    those on unshared storage stay, ``available``, in the failed host's pool."""
    with cloud.store.write() as session:
        for volume in records.attached_volumes(session, instance_id):
            if not cloud.storage(volume.host_class).shared and volume.state == "in-use":
                records.set_volume(session, volume.id, ("in-use",), state="available", instance_id=None, device=None,
                                   attach_state=None, attach_time=None)


def release(cloud: CloudContext, instance_id: str, uri: str | None) -> None:
    """After an instance's domain is gone: its DeleteOnTermination volumes are deleted, the others
    become ``available`` again (still in their pool)."""
    with cloud.store.read() as session:
        rows = [(v.id, v.host_class, v.delete_on_termination, v.made, v.state)
                for v in records.attached_volumes(session, instance_id)]
    for volume_id, host_class, delete_it, made, state in rows:
        with cloud.store.write() as session:
            if state == "creating" or delete_it:
                records.set_volume(session, volume_id, (state,), state="deleting" if made else "deleted",
                                   instance_id=None, device=None, attach_state=None, attach_time=None)
            else:
                records.set_volume(session, volume_id, (state,), state="available", instance_id=None, device=None,
                                   attach_state=None, attach_time=None)
                continue
        if made and uri is not None:  # on no host: reconcile finishes the deletion
            cloud.storage(host_class).delete(uri, records.disk_name(volume_id))
            with cloud.store.write() as session:
                records.set_volume(session, volume_id, ("deleting",), state="deleted", host_id=None)


def purge_farm(cloud: CloudContext, farm_id: int) -> None:
    """Remove the disks of every volume and snapshot of a farm being deleted (its instances are gone);
    a disk on a host that does not answer is logged and left."""
    with cloud.store.read() as session:
        rows = [(v.id, v.host_class, v.host_id) for v in session.scalars(
            select(Volume).where(Volume.farm_id == farm_id, Volume.made.is_(True), Volume.state != "deleted"))]
        rows += [(s.id, s.host_class, s.host_id) for s in session.scalars(
            select(Snapshot).where(Snapshot.farm_id == farm_id, Snapshot.made.is_(True), Snapshot.state != "deleted"))]
        places = []
        for ident, host_class, host_id in rows:
            storage = cloud.storage(host_class)
            host = records.access_host(session, host_class, host_id, storage.shared)
            places.append((ident, storage, host.uri if host else None))
    for ident, storage, uri in places:
        try:
            if uri is None:
                raise InvalidState("no host reaches its storage")
            storage.delete(uri, records.disk_name(ident))
        except Exception:  # noqa: BLE001 - the farm goes; a disk left behind is logged
            log.warning("could not remove the disk of %s of farm %s", ident, farm_id, exc_info=True)
