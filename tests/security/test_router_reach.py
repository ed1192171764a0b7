"""Issue 13 items 5 and 6 against a real netns router (namespaces, bridges, dnsmasq, iptables; no VMs):
a farm's traffic cannot reach the site's management networks, and the router's dnsmasq, which every
VM of the farm talks to, runs unprivileged and still serves new leases. Before the fix the farm
reached any address on the public side and dnsmasq ran as root (`--user=root`).

Everything stays inside namespaces and bridges this module creates (documentation range 203.0.113.0/24)."""
from __future__ import annotations

import pwd
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.netns_world import WHOAMI, World, whoami
from vrouter import _sh
from vrouter.public import PublicSegment
from vrouter.spec import Lease, RouterSpec

pytestmark = pytest.mark.root

SFX = secrets.token_hex(2)
PUB = PublicSegment(bridge=f"ivsp{SFX}", netns=f"ivs{SFX}pub", cidr="203.0.113.0/24", gateway="203.0.113.1")
MANAGEMENT = "203.0.113.192/26"      # the site's management hosts, on the far side of the router
MANAGEMENT_HOST = "203.0.113.200"
SERVICE_HOST = "203.0.113.99"        # an ordinary outside service the farm may use
PORT = 7000
VM_MAC, NEW_MAC = "02:00:0a:62:01:05", "02:00:0a:62:01:06"


def spec(**changes: object) -> RouterSpec:
    base = RouterSpec(
        key=f"s{SFX}", farm="farm-s", lan_cidr="10.98.1.0/24", lan_ip="10.98.1.1", lan_bridge=f"ivsb{SFX}",
        wan_ip="203.0.113.10", wan_prefix=24, wan_gateway=PUB.gateway, dns_forwarders=(PUB.gateway,),
        leases=(Lease(VM_MAC, "10.98.1.5", "s1"),), egress_deny=(MANAGEMENT,),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dhcp_dir: Path) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("router-reach")
    w = World(PUB, tmp / "run", dhcp_dir, tmp, SFX)
    try:
        w.later(PUB.destroy)
        PUB.ensure()
        w.bridge(f"ivsb{SFX}")
        w.later(w.router.destroy, spec().key)
        w.router.create(spec())
        w.vm(f"ivs{SFX}vm", VM_MAC, f"ivsb{SFX}")
        for name, ip in (("mgmt", MANAGEMENT_HOST), ("svc", SERVICE_HOST)):
            w.client(f"ivs{SFX}{name}", ip)
            w.serve(f"ivs{SFX}{name}", WHOAMI, str(PORT))
        rc, _ = w.dhcp(f"ivs{SFX}vm")
        assert rc == 0, "the VM got no lease"
        yield w
    finally:
        w.teardown()
    leftovers = [n for n in _sh.netns_names() if SFX in n] + [p.name for p in Path("/sys/class/net").iterdir()
                                                             if SFX in p.name]
    assert not leftovers and not (dhcp_dir / spec().key).exists(), f"left behind: {leftovers}"


def reaches(ns: str, host: str) -> bool:
    try:
        return bool(whoami(ns, host, PORT))
    except AssertionError:
        return False


def test_farm_traffic_never_reaches_the_management_network(world: World) -> None:
    vm = f"ivs{SFX}vm"
    assert whoami(vm, SERVICE_HOST, PORT) == "203.0.113.10"  # the farm still goes out, NATed
    assert not reaches(vm, MANAGEMENT_HOST)
    world.router.apply(spec(egress_deny=()))  # the deny list, nothing else, is what stops it
    try:
        assert reaches(vm, MANAGEMENT_HOST)
    finally:
        world.router.apply(spec())
    assert not reaches(vm, MANAGEMENT_HOST)


def test_dnsmasq_runs_as_its_own_unprivileged_user(world: World) -> None:
    pid = world.router._dnsmasq_pid(spec().key)
    assert pid is not None
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    uids = {int(u) for u in status["Uid"].split()}  # real, effective, saved, filesystem
    assert uids == {pwd.getpwnam("dnsmasq").pw_uid}
    hosts_dir = world.router.dhcp_dir / spec().key
    assert hosts_dir.stat().st_mode & 0o777 == 0o700 and (hosts_dir / "dhcp-hosts").stat().st_mode & 0o777 == 0o600


def test_unprivileged_dnsmasq_still_reads_new_leases(world: World) -> None:
    key = spec().key
    pid = world.router._dnsmasq_pid(key)
    newcomer = world.vm(f"ivs{SFX}new", NEW_MAC, f"ivsb{SFX}")
    world.router.apply(spec(leases=spec().leases + (Lease(NEW_MAC, "10.98.1.6", "s2"),)))
    try:
        rc, lease = world.dhcp(newcomer)
        assert rc == 0 and lease.startswith("10.98.1.6 ")
        assert world.router._dnsmasq_pid(key) == pid  # re-read on SIGHUP as the unprivileged user
    finally:
        world.router.apply(spec())
