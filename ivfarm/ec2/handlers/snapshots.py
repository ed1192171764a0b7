"""CreateSnapshot, DescribeSnapshots, DeleteSnapshot: point-in-time copies of a farm's volumes."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ivfarm.ec2 import pagination
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, not_found
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import id_list, tag_specifications
from ivfarm.ec2.handlers.volumes import ec2_errors, volume_id
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import check_ids, tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.serializer import timestamp
from ivfarm.ec2.views.volumes import snapshot_item
from ivfarm.services.compute import volumes
from ivfarm.services.tenancy import tags as tag_service
from ivfarm.store.models import Snapshot, Volume

SNAPSHOT_FILTERS = documented("DescribeSnapshots", {
    "snapshot-id": lambda s: (s.row.id,),
    "volume-id": lambda s: (s.row.volume_id,),
    "status": lambda s: (s.row.state,),
    "progress": lambda s: (f"{s.row.progress}%",),
    "volume-size": lambda s: (str(s.row.size_gb),),
    "description": lambda s: (s.row.description,),
    "start-time": lambda s: (timestamp(s.row.created_at),),
    "owner-id": lambda s: (s.owner_id,),
})


class _Candidate:
    """A snapshot row with its owner's account id."""

    def __init__(self, row: Any, owner_id: str) -> None:
        self.row = row
        self.owner_id = owner_id


@action("CreateSnapshot")
def create_snapshot(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Snapshot a volume, also while it is attached (crash-consistent)."""
    ident = volume_id(p)
    description = p.string("Description", max_length=255) or ""
    tags = tag_specifications(p, "snapshot")
    p.string("OutpostArn", max_length=256)
    p.done()
    with ec2_errors():
        made = volumes.create_snapshot(ctx.cloud, ctx.farm_id, ident, description, tags, dry_run=ctx.dry_run)
    ctx.proceed()
    assert made is not None  # only a dry run returns none, and it ended at proceed()
    return snapshot_item(made, ctx.owner_id, tags)


def _owners(p: Params, ctx: RequestContext) -> None:
    """``Owner.N``/``RestorableBy.N``: snapshots here are the farm's own, shared with nobody."""
    for owner in p.strings("Owner", max_length=64):
        if owner not in ("self", ctx.owner_id):
            raise Ec2Error("InvalidUserID.Malformed", "Snapshots of other accounts are not visible here")
    p.strings("RestorableBy", max_length=64)


@action("DescribeSnapshots")
def describe_snapshots(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's snapshots, with filters and pagination."""
    wanted = check_ids("snapshot", id_list(p, "SnapshotId"))
    _owners(p, ctx)
    page = pagination.read_page(p, 5, 1000, exclusive=("SnapshotId",))
    filters = parse_filters(p, SNAPSHOT_FILTERS)
    p.done()
    with ctx.cloud.store.read() as session:
        query = select(Snapshot).where(Snapshot.farm_id == ctx.farm_id, Snapshot.state != "deleted")
        if wanted:
            query = query.where(Snapshot.id.in_(wanted))
        rows = list(session.scalars(query))
        for row in rows:
            session.expunge(row)
        tags = tags_of(session, ctx.farm_id, "snapshot")
    absent = [s for s in wanted if s not in {r.id for r in rows}]
    if absent:
        raise not_found("snapshot", absent)
    ctx.proceed()
    candidates = [c for c in (_Candidate(r, ctx.owner_id) for r in rows) if filters.match(c, tags.get(c.row.id))]
    chosen, token = pagination.paginate(candidates, lambda c: (c.row.created_at.isoformat(), c.row.id), page)
    return {"snapshotSet": [snapshot_item(c.row, ctx.owner_id, tags.get(c.row.id)) for c in chosen],
            "nextToken": token}


@action("DeleteSnapshot")
def delete_snapshot(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Delete a completed snapshot (volumes made from it keep their data)."""
    ident = check_ids("snapshot", [p.required("SnapshotId", max_length=64)])[0]
    p.done()
    with ctx.cloud.store.read() as session:
        owned = session.scalar(select(Snapshot.state).where(Snapshot.id == ident, Snapshot.farm_id == ctx.farm_id,
                                                            Snapshot.state != "deleted"))
        creating = session.scalar(select(Volume.id).where(Volume.snapshot_id == ident, Volume.state == "creating"))
    if owned is None:
        raise not_found("snapshot", [ident])
    if creating is not None:
        raise Ec2Error("InvalidSnapshot.InUse", f"The snapshot {ident} is in use by volume {creating}, being created")
    if owned not in ("completed", "error"):
        raise Ec2Error("IncorrectState", f"The snapshot '{ident}' is '{owned}'")
    ctx.proceed()
    with ec2_errors():
        volumes.delete_snapshot(ctx.cloud, ctx.farm_id, ident)
    with ctx.cloud.store.write() as session:
        tag_service.drop_resource_tags(session, ctx.farm_id, [ident])
    return {"return": True}
