"""An instance's place in its farm's network: segment on its host, anti-spoofing, lease, elastic IP."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy.orm import Session

from drivers.hypervisor.domain_xml import Nic
from ivfarm.errors import InvalidInput
from ivfarm.services.network import firewall
from ivfarm.services.network.addressing import router_ip
from ivfarm.services.network.routers import sync_router
from ivfarm.services.network.segment_peers import sync_segment
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Instance


@dataclass(frozen=True)
class InstanceNic:
    """The private NIC of a farm instance."""

    instance_id: str
    farm_id: int
    vlan: int
    ip: str
    mac: str
    prefix: int
    gateway: str


def instance_nic(session: Session, instance: Instance) -> InstanceNic | None:
    """The instance's private NIC, or None for an instance outside any farm."""
    if instance.farm is None or instance.ip is None or instance.mac is None:
        return None
    network = ipaddress.IPv4Network(instance.farm.cidr)
    return InstanceNic(instance.id, instance.farm.id, instance.farm.vlan, instance.ip, instance.mac, network.prefixlen,
                       router_ip(instance.farm.cidr))


def attach(cloud: CloudContext, uri: str, nic: InstanceNic) -> Nic:
    """Ensure the farm segment on the host (and, for VXLAN, every carrying host's forwarding toward
    it), the lease on the router and the port's filter (security groups and anti-spoofing, the farm's
    other filters updated for the new member); the NIC to put in the domain."""
    bridge = cloud.segments.ensure(uri, nic.vlan)
    sync_segment(cloud, nic.farm_id)
    sync_router(cloud, nic.farm_id)
    if not cloud.hypervisor.features(uri).nwfilter:
        return Nic(bridge=bridge, mac=nic.mac)
    firewall.define(cloud, nic.farm_id, nic.instance_id)
    firewall.refresh_farm(cloud, nic.farm_id)
    return Nic(bridge=bridge, mac=nic.mac, filter=firewall.filter_name(cloud, nic.instance_id),
               filter_params={"IP": nic.ip})


def detach(cloud: CloudContext, nic: InstanceNic) -> None:
    """Drop the instance's lease and its forwarding entries (both rebuilt from the store, which no
    longer lists it)."""
    sync_segment(cloud, nic.farm_id)
    sync_router(cloud, nic.farm_id)


def public_bridge(cloud: CloudContext) -> str:
    """The host bridge of the site's public network; refuses a public segment inside a namespace."""
    public = cloud.config.get("network.public")
    if public.get("netns"):
        raise InvalidInput(
            f"the public segment (bridge {public['bridge']}) lives in network namespace {public['netns']}, "
            "where VMs cannot be attached: for public NICs set network.public.netns to null and "
            "network.public.bridge to a bridge on the site's public network that exists on every service host"
        )
    return str(public["bridge"])


def public_nic(cloud: CloudContext, uri: str, instance_id: str, host_class: str) -> Nic:
    """A NIC on the site's public host bridge, for service-class instances only (MAC 02:01: + id).

    Where the host has nwfilter it is filtered like a private NIC, to its own MAC and to the one
    address the site's DHCP server (``network.public.dhcp_server``, else the gateway) leases it:
    until that lease nothing but DHCP passes, so it can neither ARP for nor send from another
    farm's router, an elastic IP or the gateway."""
    if host_class != "service":
        raise InvalidInput("worker-class instances never get a public NIC")
    octets = instance_id[-8:]
    mac = "02:01:" + ":".join(octets[i:i + 2] for i in range(0, 8, 2))
    bridge = public_bridge(cloud)
    if not cloud.hypervisor.features(uri).nwfilter:
        return Nic(bridge=bridge, mac=mac)
    public = cloud.config.get("network.public")
    return Nic(bridge=bridge, mac=mac, filter=firewall.ANTI_SPOOFING_FILTER,
               filter_params={"CTRL_IP_LEARNING": "dhcp", "DHCPSERVER": public["dhcp_server"] or public["gateway"]})

