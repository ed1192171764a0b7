"""The netns router end to end, with real namespaces, bridges, veths, dnsmasq and iptables and no
VMs: "VMs" and the outside user are namespaces on the farm bridges and the public segment. All
traffic stays inside namespaces and bridges this module creates (documentation range 203.0.113.0/24)."""
from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.netns_world import WHOAMI, World, ping, sh
from tests.support.netns_world import whoami as world_whoami
from vrouter import _sh
from vrouter.errors import RouterError
from vrouter.netns import netns_name
from vrouter.public import PublicSegment
from vrouter.spec import Lease, PortForward, RouterSpec

pytestmark = pytest.mark.root  # tests/conftest.py skips it (or fails it in CI) when unmet

SFX = secrets.token_hex(2)  # unique names per run: ivt<SFX>...
PUB_NS = f"ivt{SFX}pub"
PUB = PublicSegment(bridge=f"ivtp{SFX}", netns=PUB_NS, cidr="203.0.113.0/24", gateway="203.0.113.1")
WAN_A, EIP_A, WAN_B = "203.0.113.10", "203.0.113.20", "203.0.113.11"
CLIENT_IP = "203.0.113.99"
WHOAMI_PORT = 7000

FAKE_DNS = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53)); print("ready", flush=True)
answer = bytes(int(x) for x in sys.argv[2].split("."))
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end]:
        end += q[end] + 1
    qtype, end = q[end + 1:end + 3], end + 5
    rr = b"\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04" + answer if qtype == b"\\x00\\x01" else b""
    s.sendto(q[:2] + b"\\x81\\x80" + q[4:6] + (b"\\x00\\x01" if rr else b"\\x00\\x00") + b"\\x00\\x00\\x00\\x00" + q[12:end] + rr, peer)
    print(peer[0], flush=True)
"""


def spec_a(**changes: object) -> RouterSpec:
    base = RouterSpec(
        key=f"a{SFX}", farm="farm-a", lan_cidr="10.99.1.0/24", lan_ip="10.99.1.1", lan_bridge=f"ivtb{SFX}a",
        wan_ip=WAN_A, wan_prefix=24, wan_gateway=PUB.gateway, dns_forwarders=(PUB.gateway,),
        leases=(Lease("02:00:0a:63:01:05", "10.99.1.5", "a1"), Lease("02:00:0a:63:01:06", "10.99.1.6", "a2")),
        forwards=(PortForward("tcp", 8080, "10.99.1.5", 80),),
        elastic_ip=EIP_A, elastic_target=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def spec_b() -> RouterSpec:
    return RouterSpec(
        key=f"b{SFX}", farm="farm-b", lan_cidr="10.99.2.0/24", lan_ip="10.99.2.1", lan_bridge=f"ivtb{SFX}b",
        wan_ip=WAN_B, wan_prefix=24, wan_gateway=PUB.gateway, dns_forwarders=(PUB.gateway,),
        leases=(Lease("02:00:0a:63:02:05", "10.99.2.5", "b1"),),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dhcp_dir: Path) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("vrouter-netns")
    w = World(PUB, tmp / "run", dhcp_dir, tmp, SFX)
    try:
        w.later(PUB.destroy)
        PUB.ensure()
        w.bridge(f"ivtb{SFX}a")
        w.bridge(f"ivtb{SFX}b")
        for spec in (spec_a(), spec_b()):
            w.later(w.router.destroy, spec.key)
            w.router.create(spec)
        w.vm(f"ivt{SFX}a1", "02:00:0a:63:01:05", f"ivtb{SFX}a")
        w.vm(f"ivt{SFX}a2", "02:00:0a:63:01:06", f"ivtb{SFX}a")
        w.vm(f"ivt{SFX}b1", "02:00:0a:63:02:05", f"ivtb{SFX}b")
        w.client(f"ivt{SFX}cli", CLIENT_IP)
        w.serve(f"ivt{SFX}cli", WHOAMI, str(WHOAMI_PORT))
        w.serve(PUB_NS, FAKE_DNS, PUB.gateway, "192.0.2.42")
        w.httpd(f"ivt{SFX}a1", "hello from a1")
        yield w
    finally:
        w.teardown()
    leftovers = [n for n in _sh.netns_names() if SFX in n] + [
        p.name for p in Path("/sys/class/net").iterdir() if SFX in p.name
    ]
    assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture(scope="module")
def leased(world: World) -> World:
    """The three VMs with their DHCP leases (configured by udhcpc's script)."""
    for vm in ("a1", "a2", "b1"):
        started = time.monotonic()
        rc, lease = world.dhcp(f"ivt{SFX}{vm}")
        assert rc == 0, f"{vm} got no lease"
        print(f"\nlease for {vm} in {time.monotonic() - started:.2f} s: {lease}")
    return world


def whoami(ns: str, host: str = CLIENT_IP) -> str:
    return world_whoami(ns, host, WHOAMI_PORT)


def http(ns: str, url: str) -> str | None:
    proc = sh(ns, "curl", "-s", "--max-time", "2", url, check=False)
    return proc.stdout if proc.returncode == 0 else None


def test_vm_gets_its_static_lease(leased: World) -> None:
    for vm, ip, router in (("a1", "10.99.1.5", "10.99.1.1"), ("a2", "10.99.1.6", "10.99.1.1"),
                           ("b1", "10.99.2.5", "10.99.2.1")):
        got = (leased.tmp / f"lease-ivt{SFX}{vm}").read_text().split()
        assert got == [ip, "255.255.255.0", router, router], vm  # ip, mask, gateway, DNS = the router
    assert sorted(leased.router.leases(f"a{SFX}")) == [("02:00:0a:63:01:05", "10.99.1.5"),
                                                       ("02:00:0a:63:01:06", "10.99.1.6")]
    assert leased.router.leases(f"b{SFX}") == [("02:00:0a:63:02:05", "10.99.2.5")]


def test_unknown_mac_gets_no_lease(leased: World) -> None:
    stranger = leased.vm(f"ivt{SFX}x", "02:00:0a:63:01:77", f"ivtb{SFX}a")
    rc, lease = leased.dhcp(stranger, tries=2)
    assert rc != 0 and lease == ""
    assert "02:00:0a:63:01:77" not in [mac for mac, _ in leased.router.leases(f"a{SFX}")]


def test_dns_is_forwarded(leased: World) -> None:
    out = sh(f"ivt{SFX}a1", "busybox", "nslookup", "probe.ivfarm.test", "10.99.1.1").stdout
    assert "192.0.2.42" in out


def test_vm_reaches_outside_with_router_ip(leased: World) -> None:
    assert ping(f"ivt{SFX}a1", PUB.gateway)
    assert whoami(f"ivt{SFX}a1") == WAN_A
    assert whoami(f"ivt{SFX}b1") == WAN_B


def test_public_client_cannot_reach_private_ip(leased: World) -> None:
    cli = f"ivt{SFX}cli"
    # even with a route to the farm LAN through the router, the firewall drops it
    sh(cli, "ip", "route", "add", "10.99.1.0/24", "via", WAN_A)
    try:
        assert http(cli, "http://10.99.1.5/") is None
        assert not ping(cli, "10.99.1.5")
    finally:
        sh(cli, "ip", "route", "del", "10.99.1.0/24")
    assert not ping(cli, WAN_A)  # nothing unsolicited reaches the router itself either


def test_port_forward(leased: World) -> None:
    cli = f"ivt{SFX}cli"
    assert http(cli, f"http://{WAN_A}:8080/") == "hello from a1"
    assert http(cli, f"http://{WAN_A}:80/") is None       # only the forwarded port
    assert http(cli, f"http://{WAN_A}:8081/") is None


def test_elastic_ip_bind_and_unbind(leased: World) -> None:
    router, cli = leased.router, f"ivt{SFX}cli"
    assert http(cli, f"http://{EIP_A}/") is None          # reserved, unbound: unreachable
    router.apply(spec_a(elastic_target="10.99.1.5"))
    try:
        assert http(cli, f"http://{EIP_A}/") == "hello from a1"
        assert whoami(f"ivt{SFX}a1") == EIP_A               # the bound VM leaves with the EIP
        assert whoami(f"ivt{SFX}a2") == WAN_A               # the others with the router's IP
        assert http(cli, f"http://{WAN_A}:8080/") == "hello from a1"
        addrs = sh(None, "ip", "-n", netns_name(f"a{SFX}"), "-br", "addr", "show", "dev", "wan0").stdout
        assert f"{EIP_A}/32" in addrs
    finally:
        router.apply(spec_a())
    assert http(cli, f"http://{EIP_A}/") is None
    assert whoami(f"ivt{SFX}a1") == WAN_A
    addrs = sh(None, "ip", "-n", netns_name(f"a{SFX}"), "-br", "addr", "show", "dev", "wan0").stdout
    assert EIP_A not in addrs


def test_farms_are_isolated(leased: World) -> None:
    a1, b1 = f"ivt{SFX}a1", f"ivt{SFX}b1"
    assert not ping(b1, "10.99.1.5") and not ping(b1, "10.99.1.1")
    assert not ping(a1, "10.99.2.5") and not ping(a1, "10.99.2.1")
    assert not ping(a1, WAN_B)  # the other farm's router takes no unsolicited traffic
    # even if the outside world routed farm A's LAN to router A, farm B could not get in
    sh(PUB_NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    sh(PUB_NS, "ip", "route", "add", "10.99.1.0/24", "via", WAN_A)
    try:
        assert http(b1, "http://10.99.1.5/") is None
    finally:
        sh(PUB_NS, "ip", "route", "del", "10.99.1.0/24")
        sh(PUB_NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
    assert http(b1, f"http://{WAN_A}:8080/") == "hello from a1"  # public services stay public


def test_apply_is_idempotent_and_keeps_dnsmasq(leased: World) -> None:
    router, key = leased.router, f"a{SFX}"
    ns = netns_name(key)
    pid = router._dnsmasq_pid(key)
    rules = sh(ns, "iptables-save").stdout.split("\n", 1)[1]
    router.apply(spec_a())
    router.apply(spec_a())
    assert router._dnsmasq_pid(key) == pid
    assert _strip_save(sh(ns, "iptables-save").stdout) == _strip_save(rules)


def _strip_save(text: str) -> str:
    """iptables-save without its comments and packet counters."""
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#"))


def test_apply_adds_a_lease_without_restarting(leased: World) -> None:
    router, key = leased.router, f"a{SFX}"
    pid = router._dnsmasq_pid(key)
    newcomer = leased.vm(f"ivt{SFX}a3", "02:00:0a:63:01:07", f"ivtb{SFX}a")
    spec = spec_a(leases=spec_a().leases + (Lease("02:00:0a:63:01:07", "10.99.1.7", "a3"),))
    router.apply(spec)
    try:
        rc, lease = leased.dhcp(newcomer)
        assert rc == 0 and lease.startswith("10.99.1.7 ")
        assert router._dnsmasq_pid(key) == pid  # SIGHUP, not a restart
    finally:
        router.apply(spec_a())


def test_apply_refuses_structural_change_and_unknown_router(leased: World) -> None:
    with pytest.raises(RouterError, match="wan_ip cannot change in place"):
        leased.router.apply(spec_a(wan_ip="203.0.113.12"))
    with pytest.raises(RouterError, match="does not exist"):
        leased.router.apply(replace(spec_b(), key="zz9"))
    with pytest.raises(RouterError, match="already exists"):
        leased.router.create(spec_a())


def test_dnsmasq_is_independent_of_the_caller(leased: World) -> None:
    pid = leased.router._dnsmasq_pid(f"a{SFX}")
    assert pid is not None
    assert os.getsid(pid) != os.getsid(0)
    assert os.getppid() != pid and Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1] != str(os.getpid())
