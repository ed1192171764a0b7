"""What ``reconcile`` does with volumes and snapshots a crash (or a failed undo) left in flight.

A volume or snapshot in a state in flight always has its job; only when no job of it is queued or
running (a running job whose worker died is taken over by the next provisioner) is it stuck. Then
the host decides: a disk that is there finishes the step, a disk that is not rolls it back.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from ivfarm.services.compute import volume_records as records
from ivfarm.services.compute.instances import domain_name
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Host, Instance, Job, Snapshot, Volume

IN_FLIGHT = ("creating", "deleting")


@dataclass(frozen=True)
class Stuck:
    """A volume or snapshot found in flight with no job working on it."""

    kind: str  # volume | snapshot
    ident: str
    state: str  # the state (or attachment state) found
    action: str


def _busy(cloud: CloudContext) -> set[str]:
    """Ids of volumes and snapshots a queued or running job works on, and of instances being built."""
    with cloud.store.read() as session:
        rows = session.execute(select(Job.kind, Job.payload, Job.instance_id).where(Job.state.in_(("queued", "running"))))
        return {str(payload.get("id")) if kind in records.JOB_KINDS else str(instance_id)
                for kind, payload, instance_id in rows}


def stuck(cloud: CloudContext) -> list[Stuck]:
    """Every volume and snapshot left in flight."""
    busy = _busy(cloud)
    found: list[Stuck] = []
    with cloud.store.read() as session:
        for volume in session.scalars(select(Volume).where(or_(
                Volume.state.in_(IN_FLIGHT), Volume.attach_state.in_(("attaching", "detaching"))))):
            if volume.id in busy or (volume.instance_id in busy and volume.state == "creating"):
                continue
            if volume.state == "creating" and volume.instance_id is not None:
                instance = session.get(Instance, volume.instance_id)
                if instance is not None and instance.state == "pending":  # its launch decides (reconciled with it)
                    continue
            state = volume.state if volume.state in IN_FLIGHT else str(volume.attach_state)
            action = {"creating": "finish or mark failed", "deleting": "finish deleting",
                      "attaching": "finish or roll back", "detaching": "finish or roll back"}[state]
            found.append(Stuck("volume", volume.id, state, action))
        for snapshot in session.scalars(select(Snapshot).where(Snapshot.state.in_(("pending", "deleting")))):
            if snapshot.id not in busy:
                found.append(Stuck("snapshot", snapshot.id, snapshot.state,
                                   "mark failed" if snapshot.state == "pending" else "finish deleting"))
    return found


def _uri(cloud: CloudContext, host_class: str, host_id: int | None) -> str | None:
    with cloud.store.read() as session:
        host = records.access_host(session, host_class, host_id, cloud.storage(host_class).shared)
        return host.uri if host else None


def _plugged(cloud: CloudContext, volume: Volume) -> bool:
    """True when the volume's disk is in its instance's domain definition."""
    with cloud.store.read() as session:
        instance = session.get(Instance, volume.instance_id) if volume.instance_id else None
        host = session.get(Host, instance.host_id) if instance and instance.host_id else None
        uri = host.uri if host else None
    if uri is None or volume.instance_id is None or volume.device is None:
        return False
    if cloud.hypervisor.status(uri, domain_name(volume.instance_id)) is None:
        return False
    return records.device_target(volume.device) in cloud.hypervisor.disk_targets(uri, domain_name(volume.instance_id))


def repair(cloud: CloudContext, item: Stuck) -> None:
    """Finish or roll back one stuck volume or snapshot (a compare-and-set from the state found)."""
    if item.kind == "snapshot":
        _repair_snapshot(cloud, item)
        return
    with cloud.store.read() as session:
        volume = session.get_one(Volume, item.ident)
        session.expunge(volume)
    name = records.disk_name(volume.id)
    storage = cloud.storage(volume.host_class)
    uri = _uri(cloud, volume.host_class, volume.host_id)
    if item.state == "deleting":
        if uri is not None:
            storage.delete(uri, name)
        with cloud.store.write() as session:
            records.set_volume(session, volume.id, ("deleting",), state="deleted", host_id=None)
        return
    if item.state == "creating":
        there = uri is not None and storage.exists(uri, name)
        with cloud.store.write() as session:
            if volume.instance_id is not None:  # a launch's volume: attached with its running instance
                records.set_volume(session, volume.id, ("creating",), state="in-use" if there else "error",
                                   attach_state="attached" if there else None, made=there,
                                   instance_id=volume.instance_id if there else None,
                                   device=volume.device if there else None)
            else:
                records.set_volume(session, volume.id, ("creating",), state="available" if there else "error",
                                   made=there)
        return
    plugged = _plugged(cloud, volume)
    with cloud.store.write() as session:
        if plugged:
            records.set_volume(session, volume.id, ("in-use",), attach=(item.state,), attach_state="attached", made=True)
        else:
            made = volume.made or (uri is not None and storage.exists(uri, name))
            records.set_volume(session, volume.id, ("in-use",), attach=(item.state,), state="available",
                               instance_id=None, device=None, attach_state=None, attach_time=None, made=made,
                               host_id=volume.host_id if made else None)


def _repair_snapshot(cloud: CloudContext, item: Stuck) -> None:
    with cloud.store.read() as session:
        snapshot = session.get_one(Snapshot, item.ident)
        host_class, host_id = snapshot.host_class, snapshot.host_id
    uri = _uri(cloud, host_class, host_id)
    if uri is not None:  # a pending copy may be partial: it goes
        cloud.storage(host_class).delete(uri, records.disk_name(item.ident))
    with cloud.store.write() as session:
        records.set_snapshot(session, item.ident, (item.state,),
                             state="error" if item.state == "pending" else "deleted", made=False)
