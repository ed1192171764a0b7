"""The volumes RunInstances' BlockDeviceMapping asks for: checked and recorded with the instances
(``creating``, attachment ``attaching``), made by the provisioning of each instance on its host."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import InvalidInput, InvalidState
from ivfarm.services.compute import volume_records as records
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Host, Instance, Snapshot, Volume, utcnow


@dataclass(frozen=True)
class ExtraVolume:
    """A volume made and attached at launch (one per instance)."""

    device: str
    size_gb: int | None = None
    snapshot_id: str | None = None
    delete_on_termination: bool = True
    volume_type: str = "gp2"


@dataclass(frozen=True)
class Planned:
    """The checked volumes of one instance, their GB in all, and the host they must be made on (the
    host of a snapshot on unshared storage), if any."""

    volumes: list[tuple[ExtraVolume, int, Snapshot | None]] = field(default_factory=list)
    size_gb: int = 0
    host: str | None = None


def plan(cloud: CloudContext, session: Session, farm_id: int | None, host_class: str,
         wanted: list[ExtraVolume]) -> Planned:
    """Check devices, sizes and snapshots of the extra volumes (in the launch's transaction)."""
    if not wanted:
        return Planned()
    if farm_id is None:
        raise InvalidInput("volumes are made for farm instances only")
    shared = cloud.storage(host_class).shared
    targets: set[str] = {"vda", "vdb"}
    chosen: list[tuple[ExtraVolume, int, Snapshot | None]] = []
    host: str | None = None
    for extra in wanted:
        target = records.device_target(extra.device)
        if target in targets:
            raise InvalidInput(f"The device name {extra.device[:64]} is used more than once or by the root or "
                               "ephemeral disk")
        targets.add(target)
        if extra.volume_type not in records.VOLUME_TYPES:
            raise InvalidInput(f"volume type must be one of {', '.join(records.VOLUME_TYPES)}")
        snapshot = records.get_snapshot(session, extra.snapshot_id, farm_id) if extra.snapshot_id else None
        if snapshot is not None and (snapshot.state != "completed" or snapshot.host_class != host_class):
            raise InvalidState(f"snapshot {snapshot.id} is {snapshot.state} in another zone or not completed")
        size = extra.size_gb if extra.size_gb is not None else (snapshot.size_gb if snapshot else None)
        if size is None or not 1 <= size <= records.MAX_SIZE_GB or (snapshot is not None and size < snapshot.size_gb):
            raise InvalidInput(f"Volume size for {extra.device[:64]} must be 1..{records.MAX_SIZE_GB}GiB and not "
                               "below its snapshot's")
        if snapshot is not None and snapshot.made and not shared and snapshot.host_id is not None:
            placed = session.get(Host, snapshot.host_id)
            if host is not None and placed is not None and placed.name != host:
                raise InvalidInput("the snapshots of one launch live on different hosts")
            host = placed.name if placed else host
        chosen.append((extra, size, snapshot))
    return Planned(chosen, sum(size for _, size, _ in chosen), host)


def record(session: Session, instance: Instance, planned: Planned) -> None:
    """The instance's volumes as rows, ``creating`` and ``attaching`` on its host."""
    for extra, size, snapshot in planned.volumes:
        session.add(Volume(
            id=ids.new_id("volume"), farm_id=instance.farm_id, host_class=instance.host_class, host_id=instance.host_id,
            size_gb=size, volume_type=extra.volume_type, snapshot_id=snapshot.id if snapshot else None,
            state="creating", made=False, instance_id=instance.id, device=extra.device, attach_state="attaching",
            attach_time=utcnow(), delete_on_termination=extra.delete_on_termination, created_at=utcnow()))
