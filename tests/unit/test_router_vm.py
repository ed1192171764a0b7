"""The OpenWrt router VM provider on the test driver: one small domain per farm, two NICs, clean removal.

No SSH push here: the router's address is a public one, and tests never send traffic outside the
namespaces they make (the push itself is tested against a real sshd on loopback in tests/integration).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import ConfigError
from ivfarm.services.compute import hosts
from ivfarm.services.images.catalog import add_image
from ivfarm.services.network.router_vm import LibvirtRouterVm, openwrt_backend, wan_mac
from ivfarm.services.runtime import inventory
from vrouter.spec import RouterSpec


def spec(key: str = "r120") -> RouterSpec:
    return RouterSpec(key=key, farm="lab", lan_cidr="10.64.5.0/24", lan_ip="10.64.5.1", lan_bridge="ivbr120",
                      wan_ip="198.51.100.20", wan_prefix=24, wan_gateway="198.51.100.1", dns_forwarders=("198.51.100.1",))


@pytest.fixture
def site(cloud_factory, fake_host, raw_disk) -> Cloud:  # type: ignore[no-untyped-def]
    uri = fake_host("router-host")
    cloud = cloud_factory(vrouter={"backend": "openwrt", "host_uri": uri, "openwrt": {"image": "openwrt"}},
                          network={"public": {"netns": None, "bridge": "br-public"}})
    hosts.add_host(cloud, "svc", uri, "service")
    add_image(cloud, "openwrt", raw_disk)
    return cloud


def test_router_vm_is_small_with_lan_then_wan(site: Cloud) -> None:
    vm = LibvirtRouterVm(site)
    assert vm.ensure(spec()) == "198.51.100.20" and vm.list_keys() == ["r120"]
    xml = ET.fromstring(site.hypervisor.domain_xml(vm.uri, "ivfarm-router-r120"))
    assert (xml.findtext("vcpu"), int(xml.findtext("memory"))) == ("1", 150 * 1024)
    nics = [(n.find("source").get("bridge"), n.find("mac").get("address")) for n in xml.findall("devices/interface")]
    assert nics == [("ivbr120", "02:00:0a:40:05:01"), ("br-public", wan_mac("198.51.100.20"))]
    assert vm.ensure(spec()) == "198.51.100.20"  # idempotent
    assert inventory.scan(site).domains == {}  # a router VM is not an instance: reconcile never removes it
    vm.remove("r120")
    assert vm.list_keys() == [] and site.storage("service").list_names(vm.uri) == []


def test_the_backend_needs_a_pinned_host_key(site: Cloud, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="pinned host key"):
        openwrt_backend(site)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    site.config.data["vrouter"]["openwrt"]["known_hosts"] = str(known_hosts)
    backend = openwrt_backend(site)
    assert backend.name == "openwrt" and not backend.serves_metadata


def test_a_missing_image_setting_is_a_clear_error(cloud_factory, fake_host) -> None:  # type: ignore[no-untyped-def]
    cloud = cloud_factory(vrouter={"host_uri": fake_host("h")}, network={"public": {"netns": None}})
    with pytest.raises(ConfigError, match="vrouter.openwrt.image"):
        LibvirtRouterVm(cloud).ensure(spec())
