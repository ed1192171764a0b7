"""Volume and snapshot decisions: each checks, reserves quota and records the new state together
with the job that does the disk work (``volume_work``), in one transaction; the API never touches
a host. A volume whose disk is not made yet (worker storage, nothing to copy) needs no job to be
created or deleted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import InUse, InvalidInput, InvalidState
from ivfarm.services.compute import volume_records as records
from ivfarm.services.compute.instances import get_instance
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy import quotas
from ivfarm.services.tenancy.tags import add_tags
from ivfarm.store import jobs
from ivfarm.store.models import Farm, Flavor, Snapshot, Volume, utcnow

ATTACHABLE = ("running", "stopped")


@dataclass
class VolumeRequest:
    """What CreateVolume asks for."""

    farm_id: int
    host_class: str
    size_gb: int | None = None
    snapshot_id: str | None = None
    volume_type: str = "gp2"
    tags: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def _farm(cloud: CloudContext, session: Session, farm_id: int) -> Farm:
    farm = cloud.store.lock_farm(session, farm_id)
    if farm.status != "active":
        raise InvalidState(f"farm {farm.name} is {farm.status}")
    return farm


def _queue(session: Session, kind: str, volume: Volume | Snapshot, host_id: int | None,
           instance_id: str | None = None, **payload: object) -> None:
    """The job doing ``kind`` on the volume (or snapshot), in the caller's transaction."""
    jobs.enqueue(session, kind, farm_id=volume.farm_id, host_id=host_id, instance_id=instance_id,
                 payload={"id": volume.id, **payload})


def create_volume(cloud: CloudContext, request: VolumeRequest) -> Volume | None:
    """Record a new volume (``creating`` with its job, or ``available`` when there is nothing to make
    yet); None under dry run."""
    if request.volume_type not in records.VOLUME_TYPES:
        raise InvalidInput(f"volume type must be one of {', '.join(records.VOLUME_TYPES)}")
    shared = cloud.storage(request.host_class).shared
    with cloud.store.write() as session:
        farm = _farm(cloud, session, request.farm_id)
        snapshot = records.get_snapshot(session, request.snapshot_id, farm.id) if request.snapshot_id else None
        if snapshot is not None and snapshot.state != "completed":
            raise InvalidState(f"snapshot {snapshot.id} is {snapshot.state}")
        if snapshot is not None and snapshot.host_class != request.host_class:
            raise records.ZoneMismatch(f"snapshot {snapshot.id} is in another availability zone")
        size = request.size_gb if request.size_gb is not None else (snapshot.size_gb if snapshot else None)
        if size is None:
            raise InvalidInput("The request must contain the parameter size or snapshotId")
        if not 1 <= size <= records.MAX_SIZE_GB or (snapshot is not None and size < snapshot.size_gb):
            raise InvalidInput(f"Volume of {size}GiB is outside 1..{records.MAX_SIZE_GB} or smaller than its snapshot")
        quotas.check_volumes(session, farm, 1, size)
        if request.dry_run:
            return None
        host = None
        if snapshot is not None and snapshot.made:
            host = records.access_host(session, snapshot.host_class, snapshot.host_id, shared)
            if host is None:
                raise InvalidState(f"the storage of snapshot {snapshot.id} is not reachable now")
        elif shared:
            host = records.access_host(session, request.host_class, None, shared)
        volume = Volume(id=ids.new_id("volume"), farm_id=farm.id, host_class=request.host_class,
                        host_id=host.id if host else None, size_gb=size, volume_type=request.volume_type,
                        snapshot_id=snapshot.id if snapshot else None, state="creating" if host else "available",
                        made=False, delete_on_termination=False, created_at=utcnow())
        session.add(volume)
        session.flush()
        if host is not None:
            _queue(session, "volume-create", volume, host.id)
        if request.tags:
            add_tags(session, farm.id, {volume.id: "volume"}, request.tags)
    return volume


def delete_volume(cloud: CloudContext, farm_id: int, volume_id: str) -> None:
    """Delete an available (or failed) volume: its disk goes by a job, a volume never made goes at once."""
    with cloud.store.write() as session:
        volume = records.get_volume(session, volume_id, farm_id)
        if volume.state == "in-use":
            raise InUse(f"Volume {volume_id} is currently attached to {volume.instance_id}")
        if volume.state not in ("available", "error"):
            raise InvalidState(f"The volume '{volume_id}' is '{volume.state}'")
        if not volume.made:
            records.set_volume(session, volume_id, ("available", "error"), state="deleted")
            return
        host_id = volume.host_id
        records.set_volume(session, volume_id, ("available", "error"), state="deleting")
        _queue(session, "volume-delete", volume, host_id)


def attach_volume(cloud: CloudContext, farm_id: int, volume_id: str, instance_id: str, device: str,
                  dry_run: bool = False) -> Volume:
    """Record an attachment (``in-use``/``attaching``) and its job; the volume is placed on the
    instance's host if its disk is not made yet."""
    target = records.device_target(device)
    with cloud.store.write() as session:
        _farm(cloud, session, farm_id)
        volume = records.get_volume(session, volume_id, farm_id)
        instance = get_instance(session, instance_id, farm_id)
        if volume.state == "in-use":
            raise InUse(f"vol {volume_id} is already attached to an instance")
        if volume.state != "available":
            raise InvalidState(f"The volume '{volume_id}' is '{volume.state}'")
        if instance.state not in ATTACHABLE:
            raise records.InstanceNotReady(f"The instance '{instance_id}' is not 'running' or 'stopped'")
        records.check_reachable(volume, instance, cloud.storage(volume.host_class).shared)
        flavor = session.get(Flavor, instance.flavor_name)
        if target in records.used_targets(session, instance, bool(flavor and flavor.ephemeral_gb)):
            raise InvalidInput(f"Invalid value '{device[:64]}' for unixDevice. Attachment point {device[:64]} "
                               "is already in use")
        if dry_run:
            return volume
        host_id = volume.host_id if volume.made or volume.host_id else instance.host_id
        records.set_volume(session, volume_id, ("available",), attach=(None,), state="in-use",
                           instance_id=instance_id, device=device, attach_state="attaching", attach_time=utcnow(),
                           delete_on_termination=False, host_id=host_id)
        _queue(session, "volume-attach", volume, instance.host_id, instance_id=instance_id)
        return records.get_volume(session, volume_id)


def detach_volume(cloud: CloudContext, farm_id: int, volume_id: str, instance_id: str | None = None,
                  device: str | None = None, force: bool = False, dry_run: bool = False) -> Volume:
    """Record a detachment (``detaching``) and its job."""
    with cloud.store.write() as session:
        volume = records.get_volume(session, volume_id, farm_id)
        if volume.state != "in-use" or volume.instance_id is None:
            raise InvalidState(f"Volume '{volume_id}' is in the '{volume.state}' state.")
        if (instance_id is not None and instance_id != volume.instance_id) or (device is not None and device != volume.device):
            raise records.AttachmentNotFound(f"The volume '{volume_id}' is not attached to "
                                             f"'{instance_id or device}'")
        if volume.attach_state != "attached":
            raise InvalidState(f"Volume '{volume_id}' is {volume.attach_state}.")
        if dry_run:
            return volume
        instance = get_instance(session, volume.instance_id)
        records.set_volume(session, volume_id, ("in-use",), attach=("attached",),
                           attach_state="detaching")
        _queue(session, "volume-detach", volume, instance.host_id, instance_id=instance.id, force=force)
        return records.get_volume(session, volume_id)


def modify_volume(cloud: CloudContext, farm_id: int, volume_id: str, size_gb: int | None,
                  volume_type: str | None, dry_run: bool = False) -> tuple[Volume, int]:
    """Grow a volume (quota checked) and change its type; returns it and its size before."""
    if volume_type is not None and volume_type not in records.VOLUME_TYPES:
        raise InvalidInput(f"volume type must be one of {', '.join(records.VOLUME_TYPES)}")
    with cloud.store.write() as session:
        farm = _farm(cloud, session, farm_id)
        volume = records.get_volume(session, volume_id, farm_id)
        if volume.state not in ("available", "in-use") or volume.attach_state not in (None, "attached"):
            raise InvalidState(f"The volume '{volume_id}' is '{volume.attach_state or volume.state}'")
        before = volume.size_gb
        size = before if size_gb is None else size_gb
        if size < before:
            raise InvalidInput(f"New size {size}GiB is smaller than the volume's {before}GiB: volumes only grow")
        if size > records.MAX_SIZE_GB:
            raise InvalidInput(f"Volumes are at most {records.MAX_SIZE_GB}GiB")
        if size > before:
            quotas.check_volumes(session, farm, 0, size - before)
        if dry_run:
            return volume, before
        records.set_volume(session, volume_id, (volume.state,), attach=(volume.attach_state,), size_gb=size,
                           volume_type=volume_type or volume.volume_type)
        if size > before and volume.made:
            _queue(session, "volume-resize", volume, volume.host_id, instance_id=volume.instance_id, before=before)
        return records.get_volume(session, volume_id), before


def create_snapshot(cloud: CloudContext, farm_id: int, volume_id: str, description: str, tags: dict[str, str],
                    dry_run: bool = False) -> Snapshot | None:
    """Record a snapshot (``pending`` with its job; a volume never made gives a completed empty one)."""
    with cloud.store.write() as session:
        farm = _farm(cloud, session, farm_id)
        volume = records.get_volume(session, volume_id, farm_id)
        if volume.state not in ("available", "in-use") or volume.attach_state not in (None, "attached"):
            raise InvalidState(f"The volume '{volume_id}' is '{volume.attach_state or volume.state}'")
        if dry_run:
            return None
        snapshot = Snapshot(id=ids.new_id("snapshot"), farm_id=farm.id, volume_id=volume.id,
                            host_class=volume.host_class, host_id=volume.host_id, size_gb=volume.size_gb,
                            description=description, state="pending" if volume.made else "completed",
                            made=False, progress=0 if volume.made else 100, created_at=utcnow())
        session.add(snapshot)
        session.flush()
        if volume.made:
            _queue(session, "snapshot-create", snapshot, volume.host_id)
        if tags:
            add_tags(session, farm.id, {snapshot.id: "snapshot"}, tags)
    return snapshot


def delete_snapshot(cloud: CloudContext, farm_id: int, snapshot_id: str) -> None:
    """Delete a completed (or failed) snapshot; its file goes by a job."""
    with cloud.store.write() as session:
        snapshot = records.get_snapshot(session, snapshot_id, farm_id)
        if snapshot.state not in ("completed", "error"):
            raise InvalidState(f"The snapshot '{snapshot_id}' is '{snapshot.state}'")
        if not snapshot.made:
            records.set_snapshot(session, snapshot_id, ("completed", "error"), state="deleted")
            return
        records.set_snapshot(session, snapshot_id, ("completed", "error"), state="deleting")
        _queue(session, "snapshot-delete", snapshot, snapshot.host_id)


def find_volume(cloud: CloudContext, farm_id: int, volume_id: str) -> Volume:
    """A farm's volume (NotFound otherwise)."""
    with cloud.store.read() as session:
        return records.get_volume(session, volume_id, farm_id)

