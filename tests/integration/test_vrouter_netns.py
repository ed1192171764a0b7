"""The netns router end to end, with real namespaces, bridges, veths, dnsmasq and iptables and no
VMs: "VMs" and the outside user are namespaces on the farm bridges and the public segment. All
traffic stays inside namespaces and bridges this module creates (documentation range 203.0.113.0/24)."""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.polling import poll_until
from tests.support.public_clients import add_client, remove_client
from vrouter import _sh
from vrouter.errors import RouterError
from vrouter.netns import NetnsRouter, netns_name
from vrouter.public import PublicSegment
from vrouter.spec import Lease, PortForward, RouterSpec

pytestmark = pytest.mark.root  # tests/conftest.py skips it (or fails it in CI) when unmet

SFX = secrets.token_hex(2)  # unique names per run: ivt<SFX>...
PUB_NS = f"ivt{SFX}pub"
PUB = PublicSegment(bridge=f"ivtp{SFX}", netns=PUB_NS, cidr="203.0.113.0/24", gateway="203.0.113.1")
WAN_A, EIP_A, WAN_B = "203.0.113.10", "203.0.113.20", "203.0.113.11"
CLIENT_IP = "203.0.113.99"
WHOAMI_PORT = 7000

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    busybox ifconfig "$interface" "$ip" netmask "$subnet" up
    set -- $router
    ip route replace default via "$1" dev "$interface"
    echo "$ip $subnet $1 $dns" > "$RESULT"
    ;;
esac
exit 0
"""
WHOAMI = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""
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


def sh(ns: str | None, *args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_sh.ns_exec(ns, list(args)), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"{args} in {ns} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc


class World:
    """Everything the module makes, torn down in reverse order even when a test or setup fails."""

    def __init__(self, run_dir: Path, tmp: Path) -> None:
        self.tmp = tmp
        self.router = NetnsRouter(PUB, run_dir)
        self.cleanups: list = []
        self.procs: list[subprocess.Popen[str]] = []

    def later(self, fn, *args) -> None:  # noqa: ANN001
        self.cleanups.append((fn, args))

    def teardown(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for fn, args in reversed(self.cleanups):
            try:
                fn(*args)
            except Exception as exc:  # keep going: everything must go
                print(f"cleanup {fn.__name__}{args} failed: {exc}", file=sys.stderr)

    def bridge(self, name: str) -> str:
        self.later(_sh.link_delete, name)
        _sh.ip_batch([f"link add {name} type bridge"])
        _sh.host_sysctl_disable_ipv6(name)
        _sh.ip_batch([f"link set {name} up"])
        return name

    def vm(self, name: str, mac: str, bridge: str) -> str:
        """A namespace standing for a VM: eth0 with the VM's MAC, plugged into the farm bridge."""
        host_end = f"ivtv{SFX}{len(self.cleanups)}"
        self.later(_sh.link_delete, host_end)
        self.later(_sh.netns_delete, name)
        _sh.netns_add(name)
        sh(name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _sh.ip_batch([f"link add {host_end} type veth peer name eth0 netns {name}"])
        _sh.host_sysctl_disable_ipv6(host_end)
        _sh.ip_batch([f"link set {host_end} master {bridge} up"])
        _sh.ip_batch(["link set lo up", f"link set eth0 address {mac}", "link set eth0 up"], name)
        return name

    def client(self, name: str, ip: str) -> str:
        self.later(remove_client, PUB, name)
        add_client(PUB, name, ip)
        return name

    def serve(self, ns: str, code: str, *args: str) -> None:
        proc = subprocess.Popen(_sh.ns_exec(ns, [sys.executable, "-u", "-c", code, *args]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr

    def httpd(self, ns: str, body: str) -> None:
        root = self.tmp / f"www-{ns}"
        root.mkdir()
        (root / "index.html").write_text(body)
        proc = subprocess.Popen(_sh.ns_exec(ns, ["busybox", "httpd", "-f", "-p", "80", "-h", str(root)]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        poll_until(lambda: sh(ns, "busybox", "netstat", "-ltn").stdout.count(":80 ") > 0, 10, 0.05,
                   "timed out waiting for httpd up")

    def dhcp(self, ns: str, tries: int = 6) -> tuple[int, str]:
        script = self.tmp / "udhcpc.sh"
        if not script.exists():
            script.write_text(UDHCPC_SCRIPT)
            script.chmod(0o755)
        result = self.tmp / f"lease-{ns}"
        result.unlink(missing_ok=True)
        env_cmd = ["env", f"RESULT={result}", "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
                   "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script)]
        proc = sh(ns, *env_cmd, check=False, timeout=60)
        return proc.returncode, result.read_text().strip() if result.exists() else ""


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
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("vrouter-netns")
    w = World(tmp / "run", tmp)
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
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
            "print(s.recv(64).decode())")
    return sh(ns, sys.executable, "-c", code, host, str(WHOAMI_PORT)).stdout.strip()


def http(ns: str, url: str) -> str | None:
    proc = sh(ns, "curl", "-s", "--max-time", "2", url, check=False)
    return proc.stdout if proc.returncode == 0 else None


def ping(ns: str, ip: str) -> bool:
    return sh(ns, "busybox", "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


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
