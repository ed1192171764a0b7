"""CreateTags, DeleteTags, DescribeTags on the farm's own resources."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ivfarm import ids
from ivfarm.ec2 import pagination
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, malformed, missing
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import (
    checked_tags,
    id_list,
    read_tags,
    terminated_after,
)
from ivfarm.ec2.params import Params
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.resources import tag_item
from ivfarm.errors import InvalidInput
from ivfarm.services.tenancy import tags as tag_service

TAG_FILTERS = documented("DescribeTags", {
    "key": lambda t: (t.key,),
    "value": lambda t: (t.value,),
    "resource-id": lambda t: (t.resource_id,),
    "resource-type": lambda t: (t.resource_type,),
})


def _resources(p: Params) -> list[str]:
    """``ResourceId.N``: at least one, each a well-formed id of a taggable kind."""
    resource_ids = id_list(p, "ResourceId", required=True)
    for resource_id in resource_ids:
        try:
            kind = tag_service.kind_of(resource_id)
        except tag_service.UnknownResource as exc:
            raise Ec2Error("InvalidID", str(exc)) from exc
        if not ids.is_valid(resource_id, kind):
            raise malformed(kind, resource_id)
    return list(dict.fromkeys(resource_ids))


def _require(ctx: RequestContext, resource_ids: Sequence[str]) -> None:
    with ctx.cloud.store.read() as session:
        tag_service.require_resources(session, ctx.farm_id, resource_ids, terminated_after(ctx))


@action("CreateTags")
def create_tags(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Add or overwrite tags on one or more resources; all or nothing."""
    resource_ids = _resources(p)
    tags = checked_tags(read_tags(p))
    p.done()
    if not tags:
        raise missing("Tag.1.Key")
    _require(ctx, resource_ids)
    ctx.proceed()
    try:
        tag_service.create_tags(ctx.cloud, ctx.farm_id, resource_ids, tags, terminated_after(ctx))
    except tag_service.TagLimitExceeded as exc:
        raise Ec2Error("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.") from exc
    return {"return": True}


@action("DeleteTags")
def delete_tags(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Remove tags (all of them, by key, or by key and value)."""
    resource_ids = _resources(p)
    wanted: list[tuple[str, str | None]] = []
    for struct in p.structs("Tag"):
        key = struct.string("Key", max_length=tag_service.MAX_KEY)
        if key is None:
            raise missing("Tag.N.Key")
        wanted.append((key, struct.string("Value", max_length=tag_service.MAX_VALUE)))
    p.done()
    try:
        for key, _ in wanted:
            tag_service.validate_key(key)
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc
    _require(ctx, resource_ids)
    ctx.proceed()
    tag_service.delete_tags(ctx.cloud, ctx.farm_id, resource_ids, wanted or None, terminated_after(ctx))
    return {"return": True}


@action("DescribeTags")
def describe_tags(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's tags, filtered and paginated."""
    page = pagination.read_page(p, 5, 1000)
    filters = parse_filters(p, TAG_FILTERS, tags=False)
    p.done()
    ctx.proceed()
    rows = [t for t in tag_service.list_tags(ctx.cloud, ctx.farm_id, terminated_after(ctx)) if filters.match(t)]
    chosen, token = pagination.paginate(rows, lambda t: (t.resource_id, t.key), page)
    return {"tagSet": [tag_item(t) for t in chosen], "nextToken": token}
