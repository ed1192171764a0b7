"""DescribeRegions, DescribeAvailabilityZones (one zone per hypervisor class), DescribeAccountAttributes."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ivfarm.ec2.context import RequestContext, vpc_id
from ivfarm.ec2.errors import Ec2Error, echo
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import farm_row
from ivfarm.ec2.params import Params
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.catalog import attribute_item, region_item, zone_item
from ivfarm.store.models import HOST_CLASSES, Farm, Host

REGION_FILTERS = documented("DescribeRegions", {
    "region-name": lambda r: (r["regionName"],),
    "endpoint": lambda r: (r["regionEndpoint"],),
    "opt-in-status": lambda r: (r["optInStatus"],),
})
ZONE_FILTERS = documented("DescribeAvailabilityZones", {
    "zone-name": lambda z: (z["zoneName"],),
    "zone-id": lambda z: (z["zoneId"],),
    "state": lambda z: (z["zoneState"],),
    "region-name": lambda z: (z["regionName"],),
    "zone-type": lambda z: (z["zoneType"],),
    "group-name": lambda z: (z["groupName"],),
    "opt-in-status": lambda z: (z["optInStatus"],),
})


@action("DescribeRegions")
def describe_regions(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The one region of this cloud."""
    names = p.strings("RegionName", max_length=128)
    p.boolean("AllRegions")
    filters = parse_filters(p, REGION_FILTERS, tags=False)
    p.done()
    for name in names:
        if name != ctx.region:
            raise Ec2Error("InvalidParameterValue", f"Invalid region: {echo(name)}")
    ctx.proceed()
    region = region_item(ctx.region, ctx.host or f"ec2.{ctx.region}")
    return {"regionInfo": [region] if filters.match(region) else []}


def _zones(ctx: RequestContext) -> list[dict[str, Any]]:
    with ctx.cloud.store.read() as session:
        usable = set(session.scalars(select(Host.host_class).where(Host.enabled.is_(True), Host.status == "up")))
    return [zone_item(ctx.zone_for(cls), ctx.region, f"{ctx.region}-az{n}", cls in usable)
            for n, cls in enumerate(HOST_CLASSES, start=1)]


@action("DescribeAvailabilityZones")
def describe_availability_zones(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """One zone per hypervisor class; available when an enabled host of that class is up."""
    names = p.strings("ZoneName", max_length=128)
    zone_ids = p.strings("ZoneId", max_length=128)
    p.boolean("AllAvailabilityZones")
    filters = parse_filters(p, ZONE_FILTERS, tags=False)
    p.done()
    zones = _zones(ctx)
    known_names = {z["zoneName"] for z in zones}
    known_ids = {z["zoneId"] for z in zones}
    for name in [n for n in names if n not in known_names] + [i for i in zone_ids if i not in known_ids]:
        raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{echo(name)}]")
    ctx.proceed()
    chosen = [z for z in zones if (not names or z["zoneName"] in names) and (not zone_ids or z["zoneId"] in zone_ids)]
    return {"availabilityZoneInfo": [z for z in chosen if filters.match(z)]}


def _attributes(farm: Farm) -> dict[str, list[str]]:
    return {
        "supported-platforms": ["VPC"],
        "default-vpc": [vpc_id(farm.id)],
        "max-instances": [str(farm.quota_instances)],
        "max-elastic-ips": [str(farm.quota_addresses)],
        "vpc-max-elastic-ips": [str(farm.quota_addresses)],
        "max-vcpus": [str(farm.quota_vcpus)],
        "max-memory-mib": [str(farm.quota_memory_mb)],
        "max-disk-gib": [str(farm.quota_disk_gb)],
        "max-volumes": [str(farm.quota_volumes)],
        "max-volume-gib": [str(farm.quota_volume_gb)],
    }


@action("DescribeAccountAttributes")
def describe_account_attributes(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's quota limits as account attributes."""
    names = p.strings("AttributeName", max_length=128)
    p.done()
    with ctx.cloud.store.read() as session:
        attributes = _attributes(farm_row(session, ctx))
    for name in names:
        if name not in attributes:
            raise Ec2Error("InvalidParameterValue", f"Value ({echo(name)}) for parameter AttributeName is invalid")
    ctx.proceed()
    chosen = names or list(attributes)
    return {"accountAttributeSet": [attribute_item(name, attributes[name]) for name in dict.fromkeys(chosen)]}
