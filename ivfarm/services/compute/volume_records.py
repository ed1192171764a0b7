"""Volumes and snapshots in the store: names, device targets, where a volume is reachable, and the
compare-and-set of their states (EC2's: creating, available, in-use, deleting; attaching, attached,
detaching; snapshots pending, completed).

Placement rule: a volume lives in the storage of its class (its availability zone). On shared
storage (GlusterFS, service class) any host of the class reaches it; otherwise it lives in the pool
of one host (``Volume.host_id``), set when its disk is first made: where it is created from a
snapshot (beside the snapshot), or where it is first attached (a blank volume is made there).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from ivfarm.errors import InvalidInput, InvalidState, NotFound
from ivfarm.store.models import Host, Instance, Snapshot, Volume, utcnow

GIB = 1024**3
VOLUME_TYPES = ("standard", "gp2", "gp3")
MAX_SIZE_GB = 16384
# /dev/sdf, /dev/xvdf, /dev/vdf, sdf, xvdf: the letter picks the virtio target vdf (vda is the root disk)
_DEVICE = re.compile(r"^(?:/dev/)?(?:sd|xvd|vd)([b-z])$")
JOB_KINDS = ("volume-create", "volume-delete", "volume-attach", "volume-detach", "volume-resize",
             "snapshot-create", "snapshot-delete")


class ZoneMismatch(InvalidInput):
    """The volume and the instance are in different availability zones."""


class InstanceNotReady(InvalidState):
    """The instance is in no state a volume can be attached in."""


class AttachmentNotFound(InvalidInput):
    """The volume is not attached to the instance (or device) named."""


def disk_name(volume_id: str) -> str:
    """The volume's disk in its pool (snapshots: ``snap-....qcow2``), the same on every backend."""
    return f"{volume_id}.qcow2"


def device_target(device: str) -> str:
    """The virtio target of an EC2 device name (``/dev/sdf`` -> ``vdf``); InvalidInput when it is none."""
    match = _DEVICE.match(device)
    if match is None:
        raise InvalidInput(f"Invalid value '{device[:64]}' for unixDevice. Attachment point {device[:64]} is already "
                           "in use or is not a valid device name (use /dev/sdb .. /dev/sdz)")
    return f"vd{match.group(1)}"


def get_volume(session: Session, volume_id: str, farm_id: int | None = None) -> Volume:
    """A volume that exists (not deleted), scoped to a farm when given, or NotFound."""
    volume = session.get(Volume, volume_id)
    if volume is None or volume.state == "deleted" or (farm_id is not None and volume.farm_id != farm_id):
        raise NotFound("volume", volume_id)
    return volume


def get_snapshot(session: Session, snapshot_id: str, farm_id: int | None = None) -> Snapshot:
    """A snapshot that exists (not deleted), scoped to a farm when given, or NotFound."""
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None or snapshot.state == "deleted" or (farm_id is not None and snapshot.farm_id != farm_id):
        raise NotFound("snapshot", snapshot_id)
    return snapshot


def attached_volumes(session: Session, instance_id: str) -> list[Volume]:
    """The volumes attached (or being attached or detached) to an instance."""
    return list(session.scalars(select(Volume).where(Volume.instance_id == instance_id).order_by(Volume.device)))


def used_targets(session: Session, instance: Instance, ephemeral: bool) -> set[str]:
    """Virtio targets an instance's disks take: the root, the ephemeral disk, its volumes."""
    taken = {"vda"} | ({"vdb"} if ephemeral else set())
    return taken | {device_target(v.device) for v in attached_volumes(session, instance.id) if v.device}


def check_reachable(volume: Volume, instance: Instance, shared: bool) -> None:
    """Raise ZoneMismatch (other zone) or InvalidState (another host's pool) when the instance cannot
    reach the volume's disk."""
    if volume.host_class != instance.host_class:
        raise ZoneMismatch(f"The volume '{volume.id}' is not in the same availability zone as instance "
                           f"'{instance.id}'")
    if not shared and volume.made and volume.host_id is not None and volume.host_id != instance.host_id:
        raise InvalidState(f"The volume '{volume.id}' lives in the storage of another host than instance "
                           f"'{instance.id}' and cannot be attached to it (worker volumes stay on their host)")


def access_host(session: Session, host_class: str, host_id: int | None, shared: bool) -> Host | None:
    """The host through which a volume's pool is reached: its own, or (shared storage) any host of its
    class that is up, its own first."""
    own = session.get(Host, host_id) if host_id is not None else None
    if not shared or (own is not None and own.enabled and own.status == "up"):
        return own
    return session.scalar(select(Host).where(Host.host_class == host_class, Host.enabled.is_(True),
                                             Host.status == "up").order_by(Host.id).limit(1))


def set_volume(session: Session, volume_id: str, expect: Iterable[str], *, attach: Iterable[str | None] | None = None,
               **values: Any) -> None:
    """Compare-and-set of a volume: its state must be one of ``expect`` (and its attachment one of
    ``attach`` when given) or InvalidState names what was found."""
    states = tuple(expect)
    guard: list[Any] = [Volume.id == volume_id, Volume.state.in_(states)]
    if attach is not None:
        wanted = tuple(attach)
        named = [a for a in wanted if a is not None]
        guard.append(or_(Volume.attach_state.in_(named), *([Volume.attach_state.is_(None)] if None in wanted else [])))
    if values.get("state") == "deleted":
        values.setdefault("deleted_at", utcnow())
    done = session.execute(update(Volume).where(*guard).values(**values).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        found = session.execute(select(Volume.state, Volume.attach_state).where(Volume.id == volume_id)).first()
        raise InvalidState(f"volume {volume_id} is {found[0] if found else 'gone'}"
                           f"{f' ({found[1]})' if found and found[1] else ''}; expected {' or '.join(states)}")
    _refresh(session, Volume, volume_id)


def set_snapshot(session: Session, snapshot_id: str, expect: Iterable[str], **values: Any) -> None:
    """Compare-and-set of a snapshot's state (InvalidState when it is in none of ``expect``)."""
    states = tuple(expect)
    done = session.execute(update(Snapshot).where(Snapshot.id == snapshot_id, Snapshot.state.in_(states))
                           .values(**values).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidState(f"snapshot {snapshot_id} is no longer {' or '.join(states)}")
    _refresh(session, Snapshot, snapshot_id)


def _refresh(session: Session, model: type[Volume] | type[Snapshot], ident: str) -> None:
    cached = session.identity_map.get(identity_key(model, ident))
    if cached is not None:
        session.expire(cached)
