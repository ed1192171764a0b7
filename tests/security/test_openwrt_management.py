"""Issue 13 item 5: an OpenWrt router's SSH must be closed to every farm. Before the fix, with
`ssh_allow_from` unset, the router accepted SSH from its whole WAN network, where every other
farm's traffic leaves (SNATed to their routers' WAN addresses and elastic IPs).

No OpenWrt image exists on this machine: the rules are checked as OpenWrt would read them
(netjsonconfig's own UCI parser), for the address another farm's traffic arrives from."""
from __future__ import annotations

import ipaddress

import pytest
from netjsonconfig import OpenWrt

from ivfarm.cloud import Cloud
from ivfarm.errors import ConfigError
from ivfarm.services.network.router_vm import openwrt_backend
from vrouter.errors import RouterError
from vrouter.openwrt import OpenWrtRouter
from vrouter.spec import RouterSpec
from vrouter.ssh_push import PushSettings
from vrouter.uci import join_packages

SPEC = RouterSpec(key="r7", farm="a", lan_cidr="10.64.7.0/24", lan_ip="10.64.7.1", lan_bridge="ivbr7",
                  wan_ip="198.51.100.70", wan_prefix=24, wan_gateway="198.51.100.1",
                  dns_forwarders=("198.51.100.53",), elastic_ip="198.51.100.71",
                  egress_deny=("192.0.2.0/24",))
SETTINGS = PushSettings(username="root", host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPinnedKeyOfTheRouterImage")
OTHER_FARMS = ("198.51.100.11", "198.51.100.72", "198.51.100.250")  # other routers' WAN addresses, EIPs


class NoVm:
    def ensure(self, spec: RouterSpec) -> str:
        return spec.wan_ip

    def remove(self, key: str) -> None: ...

    def list_keys(self) -> list[str]:
        return []


def ssh_sources(router: OpenWrtRouter, management: str) -> list[ipaddress.IPv4Network]:
    firewall = OpenWrt(native=join_packages(router.render(SPEC, management))).config["firewall"]
    rules = [b for b in firewall if b.get("dest_port") == "22" and b.get("target") == "ACCEPT"]
    return [ipaddress.IPv4Network(net) for rule in rules for net in rule["src_ip"]]


def test_by_default_only_the_controller_may_ssh_in() -> None:
    router = OpenWrtRouter(NoVm(), SETTINGS)
    sources = ssh_sources(router, "127.0.0.1")  # the address the controller pushes to
    assert sources == [ipaddress.IPv4Network("127.0.0.1/32")]  # this controller's own address on that route
    for address in OTHER_FARMS + (SPEC.wan_ip, SPEC.elastic_ip):
        assert not any(ipaddress.IPv4Address(address) in net for net in sources)


def test_farm_traffic_to_the_deny_list_is_rejected_on_the_router() -> None:
    firewall = OpenWrt(native=join_packages(OpenWrtRouter(NoVm(), SETTINGS)
                                            .render(SPEC, "127.0.0.1"))).config["firewall"]
    (deny,) = [b for b in firewall if b.get("name") == "Deny-site-management"]
    assert (deny["src"], deny["dest"], deny["dest_ip"], deny["target"]) == ("lan", "wan", ["192.0.2.0/24"], "REJECT")


def test_a_management_network_holding_farm_addresses_is_refused() -> None:
    router = OpenWrtRouter(NoVm(), SETTINGS, ssh_allow_from=["198.51.100.0/24"])
    with pytest.raises(RouterError, match="ssh_allow_from 198.51.100.0/24 holds 198.51.100.70, 198.51.100.71"):
        router.create(SPEC)


def test_the_site_configuration_is_checked_against_the_public_range(cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud: Cloud = cloud_factory(vrouter={"backend": "openwrt", "openwrt": {"ssh_allow_from": "198.51.100.0/25"}},
                                 network={"public": {"netns": None}})
    with pytest.raises(ConfigError, match="overlaps network.public.range 198.51.100.10-198.51.100.250"):
        openwrt_backend(cloud)
