"""UCI rendering of a RouterSpec: against hand-written expected files, and through netjsonconfig's
own OpenWrt parser (no OpenWrt image exists on this machine)."""
from __future__ import annotations

from pathlib import Path

import pytest
from netjsonconfig import OpenWrt

from vrouter.errors import RouterError
from vrouter.spec import Lease, PortForward, RouterSpec
from vrouter.uci import PACKAGES, join_packages, netjson, render_uci, split_packages

EXPECTED = Path(__file__).parent / "expected" / "uci"

FULL = RouterSpec(
    key="r142", farm="physics", lan_cidr="10.64.3.0/24", lan_ip="10.64.3.1", lan_bridge="ivbr142",
    wan_ip="198.51.100.10", wan_prefix=24, wan_gateway="198.51.100.1",
    dns_forwarders=("9.9.9.9", "149.112.112.112"),
    # given out of order on purpose: the output is sorted by MAC / protocol+port
    leases=(Lease("02:00:0a:40:03:06", "10.64.3.6", ""), Lease("02:00:0a:40:03:05", "10.64.3.5", "worker-1")),
    forwards=(PortForward("udp", 5353, "10.64.3.6", 53), PortForward("tcp", 8080, "10.64.3.5", 80)),
    elastic_ip="198.51.100.20", elastic_target="10.64.3.5",
    egress_deny=("192.0.2.0/24", "198.18.0.0/15"),
)
MINIMAL = RouterSpec(
    key="r8", farm="big", lan_cidr="10.64.8.0/22", lan_ip="10.64.8.1", lan_bridge="ivbr8",
    wan_ip="203.0.113.77", wan_prefix=24, wan_gateway="203.0.113.1", dns_forwarders=("203.0.113.53",),
    elastic_ip="203.0.113.78",  # reserved but unbound: must not appear anywhere
)
CASES = {"full": (FULL, {"ssh_allow_from": ["192.0.2.10/32"]}), "minimal": (MINIMAL, {"ssh_allow_from": ["192.0.2.10/32"]})}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("package", PACKAGES)
def test_matches_expected_file(case: str, package: str) -> None:
    spec, options = CASES[case]
    rendered = render_uci(spec, **options)
    assert rendered[package] == (EXPECTED / case / package).read_text()


def test_returns_exactly_the_three_packages() -> None:
    assert sorted(render_uci(FULL)) == sorted(PACKAGES)


def _parsed(spec: RouterSpec, **options: object) -> dict:
    return OpenWrt(native=join_packages(render_uci(spec, **options))).config


def test_round_trip_interfaces_and_dns() -> None:
    config = _parsed(FULL)
    ifaces = {i["network"]: i for i in config["interfaces"]}
    assert ifaces["lan"]["name"] == "eth0"
    assert [(a["address"], a["mask"]) for a in ifaces["lan"]["addresses"]] == [("10.64.3.1", 24)]
    wan = ifaces["wan"]["addresses"]
    assert [(a["address"], a["mask"]) for a in wan] == [("198.51.100.10", 24), ("198.51.100.20", 32)]
    assert wan[0]["gateway"] == "198.51.100.1"
    assert all(a["proto"] == "static" and a["family"] == "ipv4" for a in wan)
    assert config["dns_servers"] == ["9.9.9.9", "149.112.112.112"]


def test_round_trip_leases() -> None:
    dhcp = _parsed(FULL)["dhcp"]
    hosts = {(b["mac"], b["ip"], b.get("name", "")) for b in dhcp if b["config_name"] == "host"}
    assert hosts == {(le.mac, le.ip, le.hostname) for le in FULL.leases}
    lan = next(b for b in dhcp if b["config_name"] == "dhcp" and b["interface"] == "lan")
    assert lan["dynamicdhcp"] == "0"  # unknown MACs get nothing


def test_round_trip_redirects_and_eip_nat() -> None:
    firewall = _parsed(FULL)["firewall"]
    redirects = {
        (b["proto"], b.get("src_dip"), b.get("src_dport"), b["dest_ip"], b.get("dest_port"))
        for b in firewall if b["config_name"] == "redirect"
    }
    assert redirects == {
        ("tcp", "198.51.100.10", "8080", "10.64.3.5", "80"),
        ("udp", "198.51.100.10", "5353", "10.64.3.6", "53"),
        ("all", "198.51.100.20", None, "10.64.3.5", None),
    }
    (nat,) = [b for b in firewall if b["config_name"] == "nat"]
    assert (nat["target"], nat["src_ip"], nat["snat_ip"], nat["src"]) == ("SNAT", "10.64.3.5", "198.51.100.20", "wan")
    zones = {b["name"]: b for b in firewall if b["config_name"] == "zone"}
    assert zones["wan"]["masq"] == "1" and zones["wan"]["input"] == "DROP"
    assert zones["lan"]["input"] == "REJECT"


def test_reparsed_config_renders_identically() -> None:
    text = join_packages(render_uci(FULL))
    again = split_packages(OpenWrt(native=text).render())
    assert {k: again[k] for k in PACKAGES} == render_uci(FULL)


def test_unbound_eip_leaves_no_trace() -> None:
    files = render_uci(MINIMAL, ssh_allow_from=["192.0.2.10/32"])
    assert "203.0.113.78" not in "".join(files.values())
    config = _parsed(MINIMAL, ssh_allow_from=["192.0.2.10/32"])
    assert not [b for b in config["firewall"] if b["config_name"] in ("redirect", "nat")]


def test_binding_changes_only_what_it_should() -> None:
    bound = RouterSpec(**{**MINIMAL.to_dict(), "elastic_target": "10.64.9.200"} | {"leases": (), "forwards": ()})
    before, after = render_uci(MINIMAL), render_uci(bound)
    assert before["dhcp"] == after["dhcp"]
    assert "list ipaddr '203.0.113.78/32'" in after["network"]
    assert "option dest_ip '10.64.9.200'" in after["firewall"]


def test_devices_and_no_ssh_rule_are_options() -> None:
    config = netjson(FULL, lan_device="ens3", wan_device="ens4", ssh_allow_from=[])
    assert [i["name"] for i in config["interfaces"]] == ["ens3", "ens4"]
    assert not [b for b in config["firewall"] if b.get("config_value") == "wan_ssh"]


def test_netjsonconfig_rejection_is_a_router_error() -> None:
    with pytest.raises(RouterError, match="netjsonconfig rejected"):
        render_uci(FULL, wan_device="")
