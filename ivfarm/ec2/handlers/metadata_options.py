"""MetadataOptions: read at RunInstances, changed by ModifyInstanceMetadataOptions."""
from __future__ import annotations

from typing import Any

from ivfarm import ids
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import from_ivfarm, malformed
from ivfarm.ec2.handlers.common import visible_seconds
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import require_instances
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.instances import metadata_options_tree
from ivfarm.errors import InvalidState, NotFound
from ivfarm.services.compute import instances
from ivfarm.services.compute.metadata_options import HTTP_ENDPOINT, HTTP_TOKENS, MetadataOptions

MAX_HOP_LIMIT = 64


def read_options(p: Params) -> MetadataOptions:
    """HttpTokens, HttpPutResponseHopLimit and HttpEndpoint of ``p`` (unset ones None); the IPv6 endpoint
    and instance tags in metadata are not served here, so only ``disabled`` is accepted for them."""
    options = MetadataOptions(
        http_tokens=p.choice("HttpTokens", HTTP_TOKENS),
        hop_limit=p.integer("HttpPutResponseHopLimit", minimum=1, maximum=MAX_HOP_LIMIT),
        http_endpoint=p.choice("HttpEndpoint", HTTP_ENDPOINT),
    )
    p.choice("HttpProtocolIpv6", ("disabled",))
    p.choice("InstanceMetadataTags", ("disabled",))
    return options


@action("ModifyInstanceMetadataOptions")
def modify_instance_metadata_options(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Change one instance's metadata options; its metadata service enforces them at once."""
    instance_id = p.required("InstanceId", max_length=64)
    changes = read_options(p)
    p.done()
    if not ids.is_valid(instance_id, "instance"):
        raise malformed("instance", instance_id)
    with ctx.cloud.store.read() as session:
        require_instances(session, ctx.farm_id, visible_seconds(ctx), [instance_id])
    ctx.proceed()
    try:
        options = instances.modify_metadata_options(ctx.cloud, ctx.farm_id, instance_id, changes)
    except (InvalidState, NotFound) as exc:
        raise from_ivfarm(exc) from exc
    return {"instanceId": instance_id, "instanceMetadataOptions": metadata_options_tree(options, "pending")}
