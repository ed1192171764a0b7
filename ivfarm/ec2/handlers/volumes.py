"""CreateVolume, DescribeVolumes, DescribeVolumeStatus, DeleteVolume, AttachVolume, DetachVolume, ModifyVolume.

Each mutating call records its decision and job (``services.compute.volumes``); a provisioner does
the disk work, and the volume's state (``creating`` -> ``available``, attachment ``attaching`` ->
``attached``) tells the client when it is done, as on EC2.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import select

from ivfarm.ec2 import pagination
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, echo, invalid_value, missing, not_found
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import id_list, tag_specifications
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import check_ids, tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.serializer import timestamp
from ivfarm.ec2.views.volumes import attachment_item, health, modification_item, volume_item, volume_status_item
from ivfarm.errors import InUse, InvalidInput, InvalidState, NotFound
from ivfarm.services.compute import volume_records as records
from ivfarm.services.compute import volumes
from ivfarm.services.tenancy import tags as tag_service
from ivfarm.store.models import Volume

T = Callable[[Any], Any]


class Candidate(NamedTuple):
    """A volume row with its zone name."""

    row: Any
    zone: str


def _attached(extract: T) -> Callable[[Candidate], tuple[Any, ...]]:
    return lambda c: (extract(c.row),) if c.row.instance_id else ()


VOLUME_FILTERS = documented("DescribeVolumes", {
    "volume-id": lambda c: (c.row.id,),
    "status": lambda c: (c.row.state,),
    "size": lambda c: (str(c.row.size_gb),),
    "snapshot-id": lambda c: (c.row.snapshot_id or "",),
    "volume-type": lambda c: (c.row.volume_type,),
    "availability-zone": lambda c: (c.zone,),
    "create-time": lambda c: (timestamp(c.row.created_at),),
    "attachment.instance-id": _attached(lambda r: r.instance_id),
    "attachment.device": _attached(lambda r: r.device),
    "attachment.status": _attached(lambda r: r.attach_state),
    "attachment.attach-time": _attached(lambda r: timestamp(r.attach_time) if r.attach_time else None),
    "attachment.delete-on-termination": _attached(lambda r: "true" if r.delete_on_termination else "false"),
})
STATUS_FILTERS = documented("DescribeVolumeStatus", {
    "availability-zone": lambda c: (c.zone,),
    "volume-status.status": lambda c: (health(c.row),),
    "volume-status.details-name": lambda c: ("io-enabled", "io-performance"),
    "volume-status.details-status": lambda c: ("passed" if health(c.row) == "ok" else "failed", "not-applicable"),
})


@contextmanager
def ec2_errors(volume_id: str = "") -> Iterator[None]:
    """The service's volume errors as EC2's codes."""
    try:
        yield
    except records.ZoneMismatch as exc:
        raise Ec2Error("InvalidVolume.ZoneMismatch", str(exc)) from exc
    except records.AttachmentNotFound as exc:
        raise Ec2Error("InvalidAttachment.NotFound", str(exc)) from exc
    except records.InstanceNotReady as exc:
        raise Ec2Error("IncorrectInstanceState", str(exc)) from exc
    except InUse as exc:
        raise Ec2Error("VolumeInUse", str(exc)) from exc
    except InvalidState as exc:
        raise Ec2Error("IncorrectState", str(exc)) from exc
    except NotFound:
        raise
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc


def volume_id(p: Params, name: str = "VolumeId") -> str:
    """A required, well-formed volume id."""
    value = p.required(name, max_length=64)
    return check_ids("volume", [value])[0]


def _zone_class(ctx: RequestContext, zone: str | None) -> str:
    if zone is None:
        raise missing("AvailabilityZone")
    host_class = ctx.class_for_zone(zone)
    if host_class is None:
        raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{echo(zone)}]")
    return host_class


def _volume_type(p: Params) -> str | None:
    value = p.string("VolumeType", max_length=32)
    if value is not None and value not in records.VOLUME_TYPES:
        raise invalid_value("VolumeType", value, f"supported here: {', '.join(records.VOLUME_TYPES)}")
    return value


@action("CreateVolume")
def create_volume(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """A new volume in a zone: blank of ``Size`` GiB or from ``SnapshotId``."""
    host_class = _zone_class(ctx, p.string("AvailabilityZone", max_length=128))
    size = p.integer("Size", minimum=1, maximum=records.MAX_SIZE_GB)
    snapshot = p.string("SnapshotId", max_length=64)
    volume_type = _volume_type(p) or "gp2"
    p.integer("Iops", minimum=0)
    p.integer("Throughput", minimum=0)
    if p.boolean("Encrypted"):
        raise Ec2Error("InvalidParameterValue", "Encrypted volumes are not supported here")
    p.boolean("MultiAttachEnabled")
    p.string("ClientToken", max_length=64)
    tags = tag_specifications(p, "volume")
    p.done()
    if snapshot is not None:
        check_ids("snapshot", [snapshot])
    if size is None and snapshot is None:
        raise missing("Size")
    request = volumes.VolumeRequest(ctx.farm_id, host_class, size, snapshot, volume_type, tags, dry_run=ctx.dry_run)
    with ec2_errors():
        made = volumes.create_volume(ctx.cloud, request)
    ctx.proceed()
    assert made is not None  # only a dry run returns none, and it ended at proceed()
    return volume_item(made, ctx.zone_for(made.host_class), tags)


def _rows(ctx: RequestContext, wanted: list[str]) -> list[Any]:
    with ctx.cloud.store.read() as session:
        query = select(Volume).where(Volume.farm_id == ctx.farm_id, Volume.state != "deleted")
        if wanted:
            query = query.where(Volume.id.in_(wanted))
        rows = list(session.scalars(query))
        for row in rows:
            session.expunge(row)
    absent = [v for v in wanted if v not in {r.id for r in rows}]
    if absent:
        raise not_found("volume", absent)
    return rows


def _order(candidate: Candidate) -> tuple[str, ...]:
    return (candidate.row.created_at.isoformat(), candidate.row.id)


@action("DescribeVolumes")
def describe_volumes(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's volumes, with filters and pagination."""
    wanted = check_ids("volume", id_list(p, "VolumeId"))
    page = pagination.read_page(p, 5, 500, exclusive=("VolumeId",))
    filters = parse_filters(p, VOLUME_FILTERS)
    p.done()
    rows = _rows(ctx, wanted)
    with ctx.cloud.store.read() as session:
        tags = tags_of(session, ctx.farm_id, "volume")
    ctx.proceed()
    candidates = [c for c in (Candidate(r, ctx.zone_for(r.host_class)) for r in rows)
                  if filters.match(c, tags.get(c.row.id))]
    chosen, token = pagination.paginate(candidates, _order, page)
    return {"volumeSet": [volume_item(c.row, c.zone, tags.get(c.row.id)) for c in chosen], "nextToken": token}


@action("DescribeVolumeStatus")
def describe_volume_status(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Health of the farm's volumes."""
    wanted = check_ids("volume", id_list(p, "VolumeId"))
    page = pagination.read_page(p, 5, 1000, exclusive=("VolumeId",))
    filters = parse_filters(p, STATUS_FILTERS, tags=False)
    p.done()
    rows = _rows(ctx, wanted)
    ctx.proceed()
    candidates = [c for c in (Candidate(r, ctx.zone_for(r.host_class)) for r in rows) if filters.match(c)]
    chosen, token = pagination.paginate(candidates, _order, page)
    return {"volumeStatusSet": [volume_status_item(c.row, c.zone) for c in chosen], "nextToken": token}


@action("DeleteVolume")
def delete_volume(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Delete an available volume (VolumeInUse while attached)."""
    ident = volume_id(p)
    p.done()
    with ec2_errors():
        found = volumes.find_volume(ctx.cloud, ctx.farm_id, ident)
        if found.state == "in-use":
            raise InUse(f"Volume {ident} is currently attached to {found.instance_id}")
        if found.state not in ("available", "error"):
            raise InvalidState(f"The volume '{ident}' is '{found.state}'")
        ctx.proceed()
        volumes.delete_volume(ctx.cloud, ctx.farm_id, ident)
        with ctx.cloud.store.write() as session:
            tag_service.drop_resource_tags(session, ctx.farm_id, [ident])
    return {"return": True}


@action("AttachVolume")
def attach_volume(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Attach a volume to an instance of the farm as ``Device`` (``/dev/sdf`` is virtio ``vdf``)."""
    ident = volume_id(p)
    instance_id = check_ids("instance", [p.required("InstanceId", max_length=64)])[0]
    device = p.required("Device", max_length=32)
    p.done()
    with ec2_errors():
        volume = volumes.attach_volume(ctx.cloud, ctx.farm_id, ident, instance_id, device, dry_run=ctx.dry_run)
    ctx.proceed()
    return attachment_item(volume)


@action("DetachVolume")
def detach_volume(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Detach a volume from its instance (hot-unplug when it runs)."""
    ident = volume_id(p)
    instance_id = p.string("InstanceId", max_length=64)
    if instance_id is not None:
        check_ids("instance", [instance_id])
    device = p.string("Device", max_length=32)
    force = p.boolean("Force")
    p.done()
    with ec2_errors():
        volume = volumes.detach_volume(ctx.cloud, ctx.farm_id, ident, instance_id, device, force, dry_run=ctx.dry_run)
    ctx.proceed()
    return attachment_item(volume)


@action("ModifyVolume")
def modify_volume(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Grow a volume (``Size``) or change its shown type; volumes never shrink."""
    ident = volume_id(p)
    size = p.integer("Size", minimum=1)
    volume_type = _volume_type(p)
    p.integer("Iops", minimum=0)
    p.integer("Throughput", minimum=0)
    p.boolean("MultiAttachEnabled")
    p.done()
    with ec2_errors():
        before = volumes.find_volume(ctx.cloud, ctx.farm_id, ident)
        volume, before_gb = volumes.modify_volume(ctx.cloud, ctx.farm_id, ident, size, volume_type, dry_run=ctx.dry_run)
    ctx.proceed()
    return {"volumeModification": modification_item(volume, before_gb, before.volume_type)}
