"""AllocateAddress, DescribeAddresses, AssociateAddress, DisassociateAddress, ReleaseAddress.

Association rebinds the farm router's 1:1 NAT (``elastic_ips.associate``).
"""
from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from sqlalchemy import select

from ivfarm import ids
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, combination, echo, malformed, missing, not_found
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import (
    farm_row,
    id_list,
    tag_specifications,
    visible_seconds,
)
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import require_instances, tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.common import ec2_state
from ivfarm.ec2.views.resources import address_item
from ivfarm.services.farms import elastic_ips
from ivfarm.services.tenancy import quotas
from ivfarm.services.tenancy import tags as tag_service
from ivfarm.store.models import Address, Instance


class Candidate(NamedTuple):
    """An address with the private IP of the instance it is bound to."""

    address: Address
    private_ip: str | None


ADDRESS_FILTERS = documented("DescribeAddresses", {
    "public-ip": lambda c: (c.address.public_ip,),
    "allocation-id": lambda c: (c.address.allocation_id,),
    "association-id": lambda c: (c.address.association_id,),
    "instance-id": lambda c: (c.address.instance_id,),
    "private-ip-address": lambda c: (c.private_ip,),
    "domain": lambda c: ("vpc",),
    "public-ipv4-pool": lambda c: ("ivfarm",),
})


def _public_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise Ec2Error("InvalidParameterValue", f"Invalid value '{echo(value)}' for PublicIp") from None


def _allocation_id(value: str | None) -> str | None:
    if value is not None and not ids.is_valid(value, "allocation"):
        raise malformed("allocation", value)
    return value


def _one_of(public_ip: str | None, allocation_id: str | None, required: bool = True) -> None:
    if public_ip and allocation_id:
        raise combination("The parameters PublicIp and AllocationId cannot be used together")
    if required and not public_ip and not allocation_id:
        raise missing("AllocationId")


def _find(ctx: RequestContext, public_ip: str | None, allocation_id: str | None) -> Address:
    with ctx.cloud.store.read() as session:
        return elastic_ips.find_address(session, ctx.farm_id, public_ip, allocation_id)


@action("AllocateAddress")
def allocate_address(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Give the farm an elastic IP (within its address quota)."""
    p.choice("Domain", ("vpc", "standard"))
    tags = tag_specifications(p, "elastic-ip")
    p.done()
    with ctx.cloud.store.read() as session:
        quotas.check_address(session, farm_row(session, ctx))
    ctx.proceed()
    address = elastic_ips.allocate(ctx.cloud, ctx.farm_id)
    if tags:
        with ctx.cloud.store.write() as session:
            tag_service.add_tags(session, ctx.farm_id, {str(address.allocation_id): "elastic-ip"}, tags)
    return {"publicIp": address.public_ip, "domain": "vpc", "allocationId": address.allocation_id,
            "publicIpv4Pool": "ivfarm"}


@action("DescribeAddresses")
def describe_addresses(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's elastic IPs."""
    wanted_ips = [_public_ip(v) for v in p.strings("PublicIp", max_length=64)]
    wanted_allocations = [_allocation_id(v) for v in id_list(p, "AllocationId")]
    filters = parse_filters(p, ADDRESS_FILTERS)
    p.done()
    with ctx.cloud.store.read() as session:
        addresses = elastic_ips.farm_addresses(session, farm_row(session, ctx))
        bound = [a.instance_id for a in addresses if a.instance_id]
        private: dict[str, str | None] = {}
        if bound:
            private = {row.id: row.ip for row in session.execute(
                select(Instance.id, Instance.ip).where(Instance.id.in_(bound)))}
        tags = tags_of(session, ctx.farm_id, "elastic-ip")
    known_ips = {a.public_ip for a in addresses}
    known_allocations = {a.allocation_id for a in addresses}
    absent_ips = [ip for ip in wanted_ips if ip not in known_ips]
    if absent_ips:
        raise not_found("address", [str(ip) for ip in absent_ips])
    absent_allocations = [a for a in wanted_allocations if a not in known_allocations]
    if absent_allocations:
        raise not_found("allocation", [str(a) for a in absent_allocations])
    ctx.proceed()
    items = []
    for address in addresses:
        if wanted_ips and address.public_ip not in wanted_ips:
            continue
        if wanted_allocations and address.allocation_id not in wanted_allocations:
            continue
        ip = private.get(address.instance_id) if address.instance_id else None
        mine = tags.get(str(address.allocation_id))
        if filters.match(Candidate(address, ip), mine):
            items.append(address_item(address, ip, mine))
    return {"addressesSet": items}


@action("AssociateAddress")
def associate_address(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Bind an elastic IP 1:1 to one of the farm's instances."""
    instance_id = p.required("InstanceId", max_length=64)
    public_ip = _public_ip(p.string("PublicIp", max_length=64))
    allocation_id = _allocation_id(p.string("AllocationId", max_length=64))
    reassociate = p.boolean("AllowReassociation", default=allocation_id is None)
    p.done()
    _one_of(public_ip, allocation_id)
    if not ids.is_valid(instance_id, "instance"):
        raise malformed("instance", instance_id)
    with ctx.cloud.store.read() as session:
        row = require_instances(session, ctx.farm_id, visible_seconds(ctx), [instance_id])[0]
    if ec2_state(row.state) not in ("pending", "running", "stopping", "stopped"):
        raise Ec2Error("IncorrectInstanceState", f"The instance '{instance_id}' is not in a valid state for this operation.")
    address = _find(ctx, public_ip, allocation_id)
    if address.instance_id and address.instance_id != instance_id and not reassociate:
        raise Ec2Error("Resource.AlreadyAssociated", f"resource {address.allocation_id} is already associated")
    ctx.proceed()
    bound = elastic_ips.associate(ctx.cloud, ctx.farm_id, instance_id, public_ip, allocation_id, reassociate)
    return {"return": True, "associationId": bound.association_id}


@action("DisassociateAddress")
def disassociate_address(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Unbind an elastic IP from its instance."""
    association_id = p.string("AssociationId", max_length=64)
    public_ip = _public_ip(p.string("PublicIp", max_length=64))
    p.done()
    if association_id and public_ip:
        raise combination("The parameters PublicIp and AssociationId cannot be used together")
    if not association_id and not public_ip:
        raise missing("AssociationId")
    if association_id is not None:
        if not ids.is_valid(association_id, "association"):
            raise malformed("association", association_id)
        with ctx.cloud.store.read() as session:
            found = session.scalar(select(Address.public_ip).where(
                Address.farm_id == ctx.farm_id, Address.association_id == association_id))
        if found is None:
            raise not_found("association", [association_id])
    else:
        _find(ctx, public_ip, None)
    ctx.proceed()
    elastic_ips.disassociate(ctx.cloud, ctx.farm_id, public_ip, association_id)
    return {"return": True}


@action("ReleaseAddress")
def release_address(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Give an elastic IP back (it must not be associated)."""
    public_ip = _public_ip(p.string("PublicIp", max_length=64))
    allocation_id = _allocation_id(p.string("AllocationId", max_length=64))
    p.string("NetworkBorderGroup", max_length=64)
    p.done()
    _one_of(public_ip, allocation_id)
    address = _find(ctx, public_ip, allocation_id)
    if address.instance_id:
        raise Ec2Error("InvalidIPAddress.InUse", f"Address {address.public_ip} is in use.")
    ctx.proceed()
    elastic_ips.release(ctx.cloud, ctx.farm_id, public_ip, allocation_id)
    with ctx.cloud.store.write() as session:
        tag_service.drop_resource_tags(session, ctx.farm_id, [str(address.allocation_id)])
    return {"return": True}
