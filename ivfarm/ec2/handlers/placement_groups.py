"""CreatePlacementGroup, DescribePlacementGroups, DeletePlacementGroup (the ``spread`` strategy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivfarm import ids
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, echo, invalid_value, malformed
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import id_list, tag_specifications
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.resources import placement_group_item
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, NotFound
from ivfarm.services.compute import placement_groups
from ivfarm.store.models import PlacementGroup

# AWS's strategies; only spread is served (cluster and partition need hardware locality we do not model)
AWS_STRATEGIES = ("spread", "cluster", "partition")
SPREAD_LEVELS = ("host",)  # the farm's hypervisors are the failure domain; no racks here


@dataclass(frozen=True)
class Candidate:
    """A group as the filters see it, with its ARN."""

    group: PlacementGroup
    arn: str


def _arn(ctx: RequestContext, name: str) -> str:
    return f"arn:aws:ec2:{ctx.region}:{ctx.owner_id}:placement-group/{name}"


GROUP_FILTERS = documented("DescribePlacementGroups", {
    "group-name": lambda c: (c.group.name,),
    "group-id": lambda c: (c.group.id,),
    "group-arn": lambda c: (c.arn,),
    "strategy": lambda c: (c.group.strategy,),
    "state": lambda c: ("available",),
    "spread-level": lambda c: ("host",),
})


def _name(p: Params) -> str:
    name = p.required("GroupName", max_length=placement_groups.MAX_NAME)
    try:
        placement_groups.validate_name(name)
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc
    return name


def unknown(ident: str) -> Ec2Error:
    """InvalidPlacementGroup.Unknown, as AWS words it (another farm's group is unknown as well)."""
    return Ec2Error("InvalidPlacementGroup.Unknown", f"The Placement Group '{echo(ident)}' is unknown.")


@action("CreatePlacementGroup")
def create_placement_group(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """A new spread group; cluster and partition are refused as values this service does not support."""
    name = _name(p)
    strategy = p.required("Strategy", max_length=32)
    level = p.string("SpreadLevel", max_length=32)
    tags = tag_specifications(p, "placement-group")
    p.done()
    if strategy not in AWS_STRATEGIES:
        raise invalid_value("strategy", strategy)
    if strategy not in placement_groups.STRATEGIES:
        raise invalid_value("strategy", strategy, "only spread placement groups are supported here")
    if level is not None and level not in SPREAD_LEVELS:
        raise invalid_value("SpreadLevel", level, "spread groups here spread over hosts")
    if name in {g.name for g in placement_groups.list_groups(ctx.cloud, ctx.farm_id)}:
        raise _duplicate(name)
    ctx.proceed()
    try:
        group = placement_groups.create(ctx.cloud, ctx.farm_id, name, strategy, tags)
    except AlreadyExists as exc:
        raise _duplicate(name) from exc
    return {"placementGroup": placement_group_item(group, tags, _arn(ctx, group.name))}


def _duplicate(name: str) -> Ec2Error:
    return Ec2Error("InvalidPlacementGroup.Duplicate", f"The Placement Group '{echo(name)}' already exists.")


@action("DescribePlacementGroups")
def describe_placement_groups(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's groups, by name, id or filters."""
    names = p.strings("GroupName", max_length=placement_groups.MAX_NAME)
    group_ids = id_list(p, "GroupId")
    filters = parse_filters(p, GROUP_FILTERS)
    p.done()
    for group_id in group_ids:
        if not ids.is_valid(group_id, "placement_group"):
            raise malformed("placement_group", group_id)
    groups = placement_groups.list_groups(ctx.cloud, ctx.farm_id)
    by_name = {g.name for g in groups}
    by_id = {g.id for g in groups}
    absent = [n for n in names if n not in by_name] + [i for i in group_ids if i not in by_id]
    if absent:
        raise unknown(absent[0])
    ctx.proceed()
    with ctx.cloud.store.read() as session:
        tags = tags_of(session, ctx.farm_id, "placement-group")
    chosen = [Candidate(g, _arn(ctx, g.name)) for g in groups
              if (not names or g.name in names) and (not group_ids or g.id in group_ids)]
    return {"placementGroupSet": [placement_group_item(c.group, tags.get(c.group.id), c.arn) for c in chosen
                                  if filters.match(c, tags.get(c.group.id))]}


@action("DeletePlacementGroup")
def delete_placement_group(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Delete a group none of whose instances is live (terminated members do not hold it)."""
    name = _name(p)
    p.done()
    if name not in {g.name for g in placement_groups.list_groups(ctx.cloud, ctx.farm_id)}:
        raise unknown(name)
    ctx.proceed()
    try:
        placement_groups.delete(ctx.cloud, ctx.farm_id, name)
    except NotFound as exc:
        raise unknown(name) from exc
    except InUse as exc:
        raise Ec2Error("InvalidPlacementGroup.InUse", f"The placement group '{echo(name)}' is in use and may "
                       "not be deleted.") from exc
    return {"return": True}

