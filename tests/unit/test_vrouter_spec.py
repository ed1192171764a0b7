"""RouterSpec validation and serialisation (pure data, no system access)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

import vrouter
from vrouter.errors import RouterError, SpecError
from vrouter.spec import Lease, PortForward, RouterSpec


def make(**changes: object) -> RouterSpec:
    data: dict[str, object] = dict(
        key="r142", farm="physics", lan_cidr="10.64.3.0/24", lan_ip="10.64.3.1", lan_bridge="ivbr142",
        wan_ip="198.51.100.10", wan_prefix=24, wan_gateway="198.51.100.1", dns_forwarders=("9.9.9.9",),
        leases=(Lease("02:00:0A:40:03:05", "10.64.3.5", "vm-1"),),
        forwards=(PortForward("tcp", 8080, "10.64.3.5", 80),),
        elastic_ip="198.51.100.20", elastic_target="10.64.3.5",
    )
    data.update(changes)
    return RouterSpec(**data)  # type: ignore[arg-type]


def test_valid_spec_and_derived_values() -> None:
    spec = make()
    assert spec.leases[0].mac == "02:00:0a:40:03:05"  # normalised
    assert spec.lan_prefix == 24 and str(spec.lan_network) == "10.64.3.0/24"
    assert spec.eip_bound
    assert not make(elastic_target=None).eip_bound
    assert hash(spec) == hash(make())


def test_lists_become_tuples() -> None:
    spec = make(dns_forwarders=["1.1.1.1"], leases=[], forwards=[])
    assert spec.dns_forwarders == ("1.1.1.1",) and spec.leases == () and spec.forwards == ()


def test_round_trip_through_dict() -> None:
    spec = make()
    assert RouterSpec.from_dict(spec.to_dict()) == spec


def test_larger_lan() -> None:
    spec = make(lan_cidr="10.64.4.0/22", lan_ip="10.64.4.1", leases=(Lease("02:00:0a:40:07:fe", "10.64.7.254"),),
                forwards=(), elastic_target=None)
    assert spec.lan_prefix == 22


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"key": "R142"}, "router key"),
        ({"key": "toolong7"}, "router key"),
        ({"key": ""}, "router key"),
        ({"lan_bridge": "a-bridge-name-too-long"}, "LAN bridge"),
        ({"lan_cidr": "10.64.3.1/24"}, "LAN CIDR"),
        ({"lan_cidr": "10.64.3.0/30"}, "/29 or larger"),
        ({"lan_cidr": "fd00::/64"}, "IPv4"),
        ({"lan_ip": "10.64.4.1"}, "not a host address of the LAN"),
        ({"lan_ip": "10.64.3.0"}, "not a host address"),
        ({"wan_ip": "198.51.100.300"}, "not an IP address"),
        ({"wan_prefix": 33}, "WAN prefix"),
        ({"wan_prefix": True}, "WAN prefix"),
        ({"wan_gateway": "198.51.101.1"}, "outside the WAN network"),
        ({"wan_gateway": "198.51.100.10"}, "must differ"),
        ({"wan_ip": "10.64.3.200", "wan_gateway": "10.64.3.254", "elastic_ip": None, "elastic_target": None},
         "overlaps the LAN"),
        ({"dns_forwarders": ("dns.example",)}, "DNS forwarder"),
        ({"leases": (Lease("02:00:0a:40:03:05", "10.64.4.5"),)}, "not a host address"),
        ({"leases": (Lease("02:00:0a:40:03:05", "10.64.3.1"),)}, "router's own LAN address"),
        ({"leases": (Lease("02:00:0a:40:03:05", "10.64.3.5"), Lease("02:00:0a:40:03:05", "10.64.3.6"))}, "two leases for MAC"),
        ({"leases": (Lease("02:00:0a:40:03:05", "10.64.3.5"), Lease("02:00:0a:40:03:06", "10.64.3.5"))}, "two leases for IP"),
        ({"forwards": (PortForward("tcp", 80, "10.64.9.5", 80),)}, "not a host address"),
        ({"forwards": (PortForward("tcp", 80, "10.64.3.5", 80), PortForward("tcp", 80, "10.64.3.6", 81))}, "two port forwards"),
        ({"elastic_ip": "198.51.100.10"}, "elastic IP"),
        ({"elastic_ip": "203.0.113.5"}, "host address of the WAN network"),
        ({"elastic_ip": None}, "no elastic_ip"),
        ({"elastic_target": "10.64.3.1"}, "router itself"),
        ({"elastic_target": "10.64.9.9"}, "not a host address"),
    ],
)
def test_invalid_specs(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make(**changes)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Lease("02:00:0a:40:03", "10.64.3.5"), "not a MAC"),
        (lambda: Lease("02:00:0a:40:03:05", "10.64.3.5", "bad name"), "hostname"),
        (lambda: Lease("02:00:0a:40:03:05", "10.64.3.5", "x'; rm"), "hostname"),
        (lambda: Lease("02:00:0a:40:03:05", "fe80::1"), "IPv4"),
        (lambda: PortForward("sctp", 80, "10.64.3.5", 80), "tcp or udp"),
        (lambda: PortForward("tcp", 0, "10.64.3.5", 80), "port"),
        (lambda: PortForward("tcp", 80, "10.64.3.5", 65536), "port"),
    ],
)
def test_invalid_parts(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(SpecError, match=message):
        build()


def test_spec_error_is_a_router_error_and_value_error() -> None:
    with pytest.raises(RouterError):
        make(key="X")
    with pytest.raises(ValueError):
        make(key="X")


def test_frozen() -> None:
    spec = make()
    with pytest.raises(FrozenInstanceError):
        spec.key = "r1"  # type: ignore[misc]
    assert replace(spec, elastic_target=None).elastic_target is None


def test_vrouter_never_imports_ivfarm() -> None:
    root = Path(vrouter.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import ivfarm" not in text and "from ivfarm" not in text, path
    code = ("import sys, vrouter, vrouter.netns, vrouter.openwrt, vrouter.uci, vrouter.ssh_push, vrouter.public; "
            "print(any(m == 'ivfarm' or m.startswith('ivfarm.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
