"""The VPC view of a farm: one default VPC (the farm's CIDR) with one subnet, its route table and
internet gateway (the farm router), one network interface per instance NIC.

The ids are derived from the farm's id, so they are stable and need no storage. Creating or
deleting VPCs, subnets and gateways answers UnsupportedOperation.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from ivfarm.ec2.context import RequestContext, subnet_id
from ivfarm.ec2.errors import Ec2Error, echo, invalid_value
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import farm_row, id_list, visible_seconds
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import public_ips, visible_instances
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.common import ec2_state
from ivfarm.ec2.views.instances import interface_id
from ivfarm.services.network.addressing import RESERVED_LOW
from ivfarm.services.tenancy import security_groups

VPC_ATTRIBUTES = ("enableDnsSupport", "enableDnsHostnames", "enableNetworkAddressUsageMetrics")


def farm_hex(farm_id: int) -> str:
    return f"{farm_id:017x}"


def _unsupported(what: str) -> Callable[[RequestContext, Params], dict[str, Any]]:
    def handler(ctx: RequestContext, p: Params) -> dict[str, Any]:
        raise Ec2Error("UnsupportedOperation", f"{what}: a farm is one VPC with one subnet, made by the site's "
                                               "administrators; it cannot be created, changed or deleted here")
    return handler


for _name in ("CreateVpc", "DeleteVpc", "CreateSubnet", "DeleteSubnet", "CreateInternetGateway",
              "DeleteInternetGateway", "AttachInternetGateway", "DetachInternetGateway"):
    action(_name)(_unsupported(_name))


def _farm(ctx: RequestContext) -> tuple[str, str]:
    """(CIDR, router IP) of the caller's farm."""
    with ctx.cloud.store.read() as session:
        farm = farm_row(session, ctx)
        return farm.cidr, str(ipaddress.IPv4Network(farm.cidr).network_address + 1)


def _ids(p: Params, name: str, known: str, code: str, label: str) -> list[str]:
    wanted = id_list(p, name)
    absent = [w for w in wanted if w != known]
    if absent:
        raise Ec2Error(code, f"The {label} ID '{echo(absent[0])}' does not exist")
    return wanted


def _one(ctx: RequestContext, p: Params, items: list[Any], extractors: dict[str, Callable[[Any], Any]]) -> list[Any]:
    filters = parse_filters(p, extractors)
    p.done()
    ctx.proceed()
    return [i for i in items if filters.match(i)]


@action("DescribeVpcs")
def describe_vpcs(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's VPC: its CIDR, default, available."""
    _ids(p, "VpcId", ctx.vpc_id, "InvalidVpcID.NotFound", "vpc")
    cidr, _ = _farm(ctx)
    vpc = {"vpcId": ctx.vpc_id, "ownerId": ctx.owner_id, "state": "available", "cidrBlock": cidr,
           "cidrBlockAssociationSet": [{"associationId": f"vpc-cidr-assoc-{farm_hex(ctx.farm_id)}", "cidrBlock": cidr,
                                        "cidrBlockState": {"state": "associated"}}],
           "dhcpOptionsId": "default", "instanceTenancy": "default", "isDefault": True, "tagSet": []}
    chosen = _one(ctx, p, [vpc], {
        "vpc-id": lambda v: (v["vpcId"],), "cidr": lambda v: (v["cidrBlock"],),
        "cidr-block-association.cidr-block": lambda v: (v["cidrBlock"],), "is-default": lambda v: ("true",),
        "state": lambda v: ("available",), "owner-id": lambda v: (v["ownerId"],),
        "dhcp-options-id": lambda v: ("default",),
    })
    return {"vpcSet": chosen}


def _free_addresses(ctx: RequestContext, cidr: str) -> int:
    with ctx.cloud.store.read() as session:
        used = [r for r in visible_instances(session, ctx.farm_id, 0) if r.ip and ec2_state(r.state) != "terminated"]
    return max(0, ipaddress.IPv4Network(cidr).num_addresses - 2 - RESERVED_LOW - len(used))


@action("DescribeSubnets")
def describe_subnets(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's one subnet: the whole farm CIDR."""
    own = subnet_id(ctx.farm_id)
    _ids(p, "SubnetId", own, "InvalidSubnetID.NotFound", "subnet")
    cidr, _ = _farm(ctx)
    zone = ctx.zone_for("worker")
    subnet = {"subnetId": own, "subnetArn": f"arn:aws:ec2:{ctx.region}:{ctx.owner_id}:subnet/{own}",
              "state": "available", "vpcId": ctx.vpc_id, "ownerId": ctx.owner_id, "cidrBlock": cidr,
              "availableIpAddressCount": _free_addresses(ctx, cidr), "availabilityZone": zone,
              "defaultForAz": True, "mapPublicIpOnLaunch": False, "assignIpv6AddressOnCreation": False,
              "ipv6CidrBlockAssociationSet": [], "tagSet": []}
    chosen = _one(ctx, p, [subnet], {
        "subnet-id": lambda s: (s["subnetId"],), "vpc-id": lambda s: (s["vpcId"],),
        "cidr-block": lambda s: (s["cidrBlock"],), "cidr": lambda s: (s["cidrBlock"],),
        "cidrBlock": lambda s: (s["cidrBlock"],), "availability-zone": lambda s: (s["availabilityZone"],),
        "default-for-az": lambda s: ("true",), "defaultForAz": lambda s: ("true",), "state": lambda s: ("available",),
        "owner-id": lambda s: (s["ownerId"],), "map-public-ip-on-launch": lambda s: ("false",),
    })
    return {"subnetSet": chosen}


@action("DescribeRouteTables")
def describe_route_tables(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The main route table: the farm CIDR locally, everything else through the farm router."""
    table_id = f"rtb-{farm_hex(ctx.farm_id)}"
    _ids(p, "RouteTableId", table_id, "InvalidRouteTableID.NotFound", "route table")
    cidr, _ = _farm(ctx)
    gateway = f"igw-{farm_hex(ctx.farm_id)}"
    table = {"routeTableId": table_id, "vpcId": ctx.vpc_id, "ownerId": ctx.owner_id,
             "routeSet": [{"destinationCidrBlock": cidr, "gatewayId": "local", "state": "active",
                           "origin": "CreateRouteTable"},
                          {"destinationCidrBlock": "0.0.0.0/0", "gatewayId": gateway, "state": "active",
                           "origin": "CreateRoute"}],
             "associationSet": [{"routeTableAssociationId": f"rtbassoc-{farm_hex(ctx.farm_id)}",
                                 "routeTableId": table_id, "main": True,
                                 "associationState": {"state": "associated"}}],
             "propagatingVgwSet": [], "tagSet": []}
    chosen = _one(ctx, p, [table], {
        "route-table-id": lambda t: (t["routeTableId"],), "vpc-id": lambda t: (t["vpcId"],),
        "association.main": lambda t: ("true",), "owner-id": lambda t: (t["ownerId"],),
        "route.gateway-id": lambda t: ("local", gateway),
        "route.destination-cidr-block": lambda t: (cidr, "0.0.0.0/0"),
    })
    return {"routeTableSet": chosen}


@action("DescribeInternetGateways")
def describe_internet_gateways(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm router, as the VPC's internet gateway."""
    gateway_id = f"igw-{farm_hex(ctx.farm_id)}"
    _ids(p, "InternetGatewayId", gateway_id, "InvalidInternetGatewayID.NotFound", "internet gateway")
    gateway = {"internetGatewayId": gateway_id, "ownerId": ctx.owner_id,
               "attachmentSet": [{"vpcId": ctx.vpc_id, "state": "available"}], "tagSet": []}
    chosen = _one(ctx, p, [gateway], {
        "internet-gateway-id": lambda g: (g["internetGatewayId"],), "attachment.vpc-id": lambda g: (ctx.vpc_id,),
        "attachment.state": lambda g: ("available",), "owner-id": lambda g: (g["ownerId"],),
    })
    return {"internetGatewaySet": chosen}


@action("DescribeVpcAttribute")
def describe_vpc_attribute(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """enableDnsSupport and enableDnsHostnames are on (the farm router answers DNS)."""
    vpc = p.required("VpcId", max_length=64)
    attribute = p.required("Attribute", max_length=64)
    p.done()
    if vpc != ctx.vpc_id:
        raise Ec2Error("InvalidVpcID.NotFound", f"The vpc ID '{echo(vpc)}' does not exist")
    if attribute not in VPC_ATTRIBUTES:
        raise invalid_value("Attribute", attribute, f"expected one of {', '.join(VPC_ATTRIBUTES)}")
    ctx.proceed()
    return {"vpcId": vpc, attribute: {"value": attribute != "enableNetworkAddressUsageMetrics"}}


def _interface(ctx: RequestContext, row: Any, groups: list[tuple[str, str]], public_ip: str | None) -> dict[str, Any]:
    own = subnet_id(ctx.farm_id)
    return {
        "networkInterfaceId": interface_id(row.id), "subnetId": own, "vpcId": ctx.vpc_id,
        "availabilityZone": ctx.zone_for(row.host_class), "description": "", "ownerId": ctx.owner_id,
        "requesterManaged": False, "status": "in-use", "macAddress": row.mac, "privateIpAddress": row.ip,
        "sourceDestCheck": True, "groupSet": [{"groupId": g, "groupName": n} for g, n in groups],
        "attachment": {"attachmentId": "eni-attach-" + row.id.partition("-")[2], "instanceId": row.id,
                       "instanceOwnerId": ctx.owner_id, "deviceIndex": 0, "status": "attached",
                       "attachTime": row.launched_at or row.created_at, "deleteOnTermination": True},
        "association": {"publicIp": public_ip, "ipOwnerId": ctx.owner_id} if public_ip else None,
        "tagSet": [],
        "privateIpAddressesSet": [{"privateIpAddress": row.ip, "primary": True}],
        "interfaceType": "interface",
    }


INTERFACE_FILTERS: dict[str, Callable[[Any], Any]] = {
    "network-interface-id": lambda i: (i["networkInterfaceId"],),
    "attachment.instance-id": lambda i: (i["attachment"]["instanceId"],),
    "attachment.status": lambda i: ("attached",),
    "vpc-id": lambda i: (i["vpcId"],), "subnet-id": lambda i: (i["subnetId"],),
    "private-ip-address": lambda i: (i["privateIpAddress"],), "mac-address": lambda i: (i["macAddress"],),
    "group-id": lambda i: [g["groupId"] for g in i["groupSet"]],
    "group-name": lambda i: [g["groupName"] for g in i["groupSet"]],
    "status": lambda i: (i["status"],), "availability-zone": lambda i: (i["availabilityZone"],),
    "owner-id": lambda i: (i["ownerId"],),
    "association.public-ip": lambda i: ((i["association"] or {}).get("publicIp"),),
}


@action("DescribeNetworkInterfaces")
def describe_network_interfaces(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """One interface per NIC of the farm's instances that are not terminated."""
    wanted = id_list(p, "NetworkInterfaceId")
    filters = parse_filters(p, INTERFACE_FILTERS)
    p.done()
    with ctx.cloud.store.read() as session:
        rows = [r for r in visible_instances(session, ctx.farm_id, visible_seconds(ctx))
                if r.ip and r.mac and ec2_state(r.state) != "terminated"]
        groups = security_groups.memberships(session, ctx.farm_id)
        addresses = public_ips(session, ctx.farm_id)
    interfaces = [_interface(ctx, r, groups.get(r.id, []), addresses.get(r.id)) for r in rows]
    known = {i["networkInterfaceId"] for i in interfaces}
    absent = [w for w in wanted if w not in known]
    if absent:
        raise Ec2Error("InvalidNetworkInterfaceID.NotFound",
                       f"The networkInterface ID '{echo(absent[0])}' does not exist")
    ctx.proceed()
    return {"networkInterfaceSet": [i for i in interfaces if (not wanted or i["networkInterfaceId"] in wanted)
                                    and filters.match(i)]}
