"""What the netns backend puts into a router namespace: iptables rules, dnsmasq flags and hosts
file, lease parsing, names (pure rendering, no root)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.public_clients import client_veth
from vrouter.errors import RouterError
from vrouter.netns import NetnsRouter, lan_veth, netns_name, wan_veth
from vrouter.netns_rules import (
    DnsmasqPaths,
    dnsmasq_args,
    dnsmasq_hosts,
    iptables_ruleset,
    metadata_server_args,
    parse_leases,
)
from vrouter.public import PublicSegment
from vrouter.spec import Lease, PortForward, RouterSpec

SPEC = RouterSpec(
    key="r142", farm="physics", lan_cidr="10.64.3.0/24", lan_ip="10.64.3.1", lan_bridge="ivbr142",
    wan_ip="198.51.100.10", wan_prefix=24, wan_gateway="198.51.100.1", dns_forwarders=("9.9.9.9", "1.1.1.1"),
    leases=(Lease("02:00:0a:40:03:06", "10.64.3.6"), Lease("02:00:0a:40:03:05", "10.64.3.5", "vm-1")),
    forwards=(PortForward("tcp", 8080, "10.64.3.5", 80), PortForward("udp", 5353, "10.64.3.6", 53)),
    elastic_ip="198.51.100.20", elastic_target="10.64.3.5",
)
UNBOUND = RouterSpec(**{**SPEC.to_dict(), "elastic_target": None,
                        "leases": SPEC.leases, "forwards": SPEC.forwards})


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_ruleset_restores_two_whole_tables_with_default_drop() -> None:
    rules = lines(iptables_ruleset(SPEC))
    assert rules.count("COMMIT") == 2
    assert rules[0] == "*filter" and "*nat" in rules
    assert ":INPUT DROP [0:0]" in rules and ":FORWARD DROP [0:0]" in rules
    assert "-A INPUT -j IVFARM-IN" in rules and "-A FORWARD -j IVFARM-FWD" in rules
    assert "-A PREROUTING -j IVFARM-DNAT" in rules and "-A POSTROUTING -j IVFARM-SNAT" in rules


def test_input_allows_only_dhcp_dns_ping_and_metadata_from_lan() -> None:
    inbound = [r for r in lines(iptables_ruleset(SPEC)) if r.startswith("-A IVFARM-IN")]
    accepts = [r for r in inbound if r.endswith("ACCEPT")]
    assert all("-i lan0" in r or "-i lo" in r or "ESTABLISHED" in r for r in accepts)
    assert any("--dport 67" in r for r in accepts) and any("--dport 53" in r for r in accepts)
    # tcp/80 only towards the metadata address: the router's LAN IP serves no HTTP
    assert [r for r in accepts if "-p tcp" in r and "--dport 80" in r] == [
        "-A IVFARM-IN -i lan0 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j ACCEPT"
    ]
    assert inbound[-1] == "-A IVFARM-IN -j DROP"


def test_metadata_server_command_line(tmp_path: Path) -> None:
    args = metadata_server_args(tmp_path / "metadata.json", tmp_path / "metadata.pid", "nobody")
    assert args[:2] == ["-m", "vrouter.metadata_server"]
    assert f"--records={tmp_path}/metadata.json" in args and f"--pid-file={tmp_path}/metadata.pid" in args
    assert "--listen=169.254.169.254:80" in args and "--daemon" in args and "--user=nobody" in args


def test_forwards_and_eip() -> None:
    rules = lines(iptables_ruleset(SPEC))
    assert ("-A IVFARM-DNAT -i wan0 -d 198.51.100.10/32 -p tcp -m tcp --dport 8080 "
            "-j DNAT --to-destination 10.64.3.5:80") in rules
    assert ("-A IVFARM-DNAT -i wan0 -d 198.51.100.10/32 -p udp -m udp --dport 5353 "
            "-j DNAT --to-destination 10.64.3.6:53") in rules
    assert "-A IVFARM-DNAT -i wan0 -d 198.51.100.20/32 -j DNAT --to-destination 10.64.3.5" in rules
    snat = [r for r in rules if r.startswith("-A IVFARM-SNAT")]
    assert snat == [  # the VM's EIP SNAT strictly before the farm's SNAT
        "-A IVFARM-SNAT -o wan0 -s 10.64.3.5/32 -j SNAT --to-source 198.51.100.20",
        "-A IVFARM-SNAT -o wan0 -s 10.64.3.0/24 -j SNAT --to-source 198.51.100.10",
    ]
    fwd = [r for r in rules if r.startswith("-A IVFARM-FWD")]
    assert fwd[-1] == "-A IVFARM-FWD -j DROP"
    inbound = [r for r in fwd if "-i wan0" in r]
    assert all("--ctstate DNAT" in r and "--ctorigdst" in r for r in inbound)  # only what we DNATed
    assert len(inbound) == 3


def test_unbound_eip_has_no_rules() -> None:
    text = iptables_ruleset(UNBOUND)
    assert "198.51.100.20" not in text
    assert "--to-source 198.51.100.10" in text


def test_ruleset_is_deterministic() -> None:
    assert iptables_ruleset(SPEC) == iptables_ruleset(RouterSpec.from_dict(SPEC.to_dict()))


def test_hosts_file_sorted_by_mac() -> None:
    assert dnsmasq_hosts(SPEC) == "02:00:0a:40:03:05,10.64.3.5,vm-1\n02:00:0a:40:03:06,10.64.3.6\n"
    assert dnsmasq_hosts(RouterSpec(**{**SPEC.to_dict(), "leases": (), "forwards": ()})) == ""


def test_dnsmasq_flags() -> None:
    args = dnsmasq_args(SPEC, DnsmasqPaths.under(Path("/run/x/r142"), Path("/var/x/dhcp/r142")), "dnsmasq",
                        lease_time="1h")
    assert "--port=0" not in " ".join(args)                    # the router is the farm's DNS
    assert "--no-resolv" in args and "--server=9.9.9.9" in args and "--server=1.1.1.1" in args
    assert "--dhcp-range=10.64.3.0,static,255.255.255.0,1h" in args
    assert "--dhcp-hostsfile=/var/x/dhcp/r142/dhcp-hosts" in args and "--user=dnsmasq" in args
    assert "--dhcp-option=option:router,10.64.3.1" in args
    assert "--dhcp-option=option:dns-server,10.64.3.1" in args
    assert "--interface=lan0" in args and "--bind-interfaces" in args and "--dhcp-authoritative" in args
    assert "--pid-file=/run/x/r142/dnsmasq.pid" in args and "--dhcp-leasefile=/run/x/r142/dnsmasq.leases" in args


def test_parse_leases() -> None:
    text = (
        "1700000000 02:00:0a:40:03:05 10.64.3.5 vm-1 01:02:00:0a:40:03:05\n"
        "0 02:00:0A:40:03:06 10.64.3.6 * *\n"
        "duid 00:01:00:01:2c:aa\n"
        "\n"
    )
    assert parse_leases(text) == [("02:00:0a:40:03:05", "10.64.3.5"), ("02:00:0a:40:03:06", "10.64.3.6")]


def test_names_fit_interface_limits() -> None:
    for name in (lan_veth("abcdef"), wan_veth("abcdef"), client_veth("a-very-long-client-namespace-name")):
        assert len(name) <= 15
    assert netns_name("r142") == "ivfarm-r142"


def test_router_refuses_a_key_colliding_with_the_public_namespace(tmp_path: Path) -> None:
    router = NetnsRouter(PublicSegment(), tmp_path / "run", tmp_path / "dhcp")
    with pytest.raises(RouterError, match="public segment"):
        router.destroy("public")
    with pytest.raises(RouterError, match="router key"):
        router.destroy("../etc")


def test_public_segment_validation() -> None:
    with pytest.raises(RouterError, match="outside"):
        PublicSegment(cidr="198.51.100.0/24", gateway="203.0.113.1")
    with pytest.raises(RouterError, match="1-15"):
        PublicSegment(bridge="x" * 16)
    default = PublicSegment()
    assert (default.netns, default.bridge, default.cidr, default.gateway, default.prefix) == (
        "ivfarm-public", "ivpub0", "198.51.100.0/24", "198.51.100.1", 24)
