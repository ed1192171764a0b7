"""The netns router's metadata service with real namespaces, bridges and iptables and no VMs:
"VMs" and an outside user are namespaces. Each farm's router answers its own LAN only, each VM
gets its own record, and the server lives and dies with the router. All traffic stays inside the
namespaces and bridges made here (documentation range 203.0.113.0/24)."""
from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.public_clients import add_client, remove_client
from vrouter import _sh
from vrouter.errors import RouterError
from vrouter.imds import METADATA_IP
from vrouter.netns import NetnsRouter, netns_name
from vrouter.public import PublicSegment
from vrouter.spec import Lease, RouterSpec

pytestmark = pytest.mark.root

SFX = secrets.token_hex(2)
PUB = PublicSegment(bridge=f"ivtm{SFX}", netns=f"ivt{SFX}pubm", cidr="203.0.113.0/24", gateway="203.0.113.1")
WAN_A, WAN_B, CLIENT_IP = "203.0.113.40", "203.0.113.41", "203.0.113.98"
URL = f"http://{METADATA_IP}"
LATENCY = """
import http.client, statistics, sys, time
times = []
for _ in range(int(sys.argv[2])):
    conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=3)
    began = time.perf_counter(); conn.request("GET", "/latest/meta-data/instance-id"); conn.getresponse().read()
    times.append(time.perf_counter() - began); conn.close()
print(statistics.median(times))
"""


def spec(farm: str, octet: int, wan: str) -> RouterSpec:
    return RouterSpec(
        key=f"m{farm}{SFX}", farm=f"farm-{farm}", lan_cidr=f"10.97.{octet}.0/24", lan_ip=f"10.97.{octet}.1",
        lan_bridge=f"ivtn{SFX}{farm}", wan_ip=wan, wan_prefix=24, wan_gateway=PUB.gateway,
        dns_forwarders=(PUB.gateway,),
        leases=(Lease(f"02:00:0a:61:{octet:02x}:05", f"10.97.{octet}.5", f"{farm}1"),
                Lease(f"02:00:0a:61:{octet:02x}:06", f"10.97.{octet}.6", f"{farm}2")),
    )


SPEC_A, SPEC_B = spec("a", 1, WAN_A), spec("b", 2, WAN_B)


def record(instance_id: str, ip: str, user_data: bytes | None) -> dict:
    tree = {"instance-id": instance_id, "local-ipv4": ip, "placement": {"availability-zone": "z"}}
    return {"meta-data": tree, "user-data": base64.b64encode(user_data).decode() if user_data else None}


def curl(ns: str, url: str) -> tuple[int, bytes]:
    """(HTTP status or 0 when unreachable, body) of a GET from inside a namespace."""
    proc = subprocess.run(_sh.ns_exec(ns, ["curl", "-s", "--max-time", "1", "-o", "-", "-w", "\n%{http_code}", url]),
                          capture_output=True, timeout=10, check=False)
    body, _, code = proc.stdout.rpartition(b"\n")
    return (int(code) if proc.returncode == 0 and code.isdigit() else 0), body


@dataclass
class World:
    router: NetnsRouter
    cleanups: ExitStack  # runs every cleanup, last made first, even when one fails


def bridge(cleanups: ExitStack, name: str) -> None:
    cleanups.callback(_sh.link_delete, name)
    _sh.ip_batch([f"link add {name} type bridge"])
    _sh.host_sysctl_disable_ipv6(name)
    _sh.ip_batch([f"link set {name} up"])


def vm(cleanups: ExitStack, name: str, lease: Lease, router: RouterSpec) -> None:
    """A namespace standing for a VM, with its static address and the router as default route."""
    host_end = f"ivtw{SFX}" + "".join(lease.ip.split(".")[2:])  # e.g. ivtw<SFX>15 for 10.97.1.5
    cleanups.callback(_sh.link_delete, host_end)
    cleanups.callback(_sh.netns_delete, name)
    _sh.netns_add(name)
    _sh.ip_batch([f"link add {host_end} type veth peer name eth0 netns {name}"])
    _sh.host_sysctl_disable_ipv6(host_end)
    _sh.ip_batch([f"link set {host_end} master {router.lan_bridge} up"])
    _sh.ip_batch(["link set lo up", f"link set eth0 address {lease.mac}", "link set eth0 up",
                  f"address add {lease.ip}/{router.lan_prefix} dev eth0",
                  f"route add default via {router.lan_ip}"], name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dhcp_dir: Path) -> Iterator[World]:
    with ExitStack() as cleanups:
        router = NetnsRouter(PUB, tmp_path_factory.mktemp("vrouter-metadata") / "run", dhcp_dir)
        cleanups.callback(PUB.destroy)
        PUB.ensure()
        for spec_ in (SPEC_A, SPEC_B):
            bridge(cleanups, spec_.lan_bridge)
            cleanups.callback(router.destroy, spec_.key)
            router.create(spec_)
        vm(cleanups, f"ivt{SFX}ma1", SPEC_A.leases[0], SPEC_A)
        vm(cleanups, f"ivt{SFX}ma2", SPEC_A.leases[1], SPEC_A)
        vm(cleanups, f"ivt{SFX}mb1", SPEC_B.leases[0], SPEC_B)
        cleanups.callback(remove_client, PUB, f"ivt{SFX}mcli")
        add_client(PUB, f"ivt{SFX}mcli", CLIENT_IP)
        router.publish_metadata(SPEC_A.key, {"10.97.1.5": record("i-a1", "10.97.1.5", b"#!/bin/sh\necho A-SECRET\n")})
        router.publish_metadata(SPEC_B.key, {"10.97.2.5": record("i-b1", "10.97.2.5", None)})
        yield World(router, cleanups)
    leftovers = [n for n in _sh.netns_names() if SFX in n] + [
        p.name for p in Path("/sys/class/net").iterdir() if SFX in p.name
    ]
    assert not leftovers, f"left behind: {leftovers}"


def test_each_vm_gets_its_own_record(world: World) -> None:
    assert curl(f"ivt{SFX}ma1", f"{URL}/latest/meta-data/instance-id") == (200, b"i-a1")
    assert curl(f"ivt{SFX}ma1", f"{URL}/latest/user-data") == (200, b"#!/bin/sh\necho A-SECRET\n")
    assert curl(f"ivt{SFX}ma1", f"{URL}/2009-04-04/meta-data/placement/availability-zone") == (200, b"z")
    assert curl(f"ivt{SFX}ma2", f"{URL}/latest/meta-data/instance-id")[0] == 404  # in the farm, no record
    assert curl(f"ivt{SFX}mb1", f"{URL}/latest/meta-data/instance-id") == (200, b"i-b1")  # its own router
    assert curl(f"ivt{SFX}mb1", f"{URL}/latest/user-data")[0] == 404


def test_nothing_else_reaches_the_service(world: World) -> None:
    assert curl(f"ivt{SFX}mb1", f"http://{SPEC_A.lan_ip}/latest/meta-data/")[0] == 0  # other farm: no route
    assert curl(f"ivt{SFX}ma1", f"http://{SPEC_A.lan_ip}/latest/meta-data/")[0] == 0  # router LAN IP: no HTTP
    client = f"ivt{SFX}mcli"
    _sh.ip_batch([f"route add {METADATA_IP}/32 via {WAN_A}"], client)  # an outsider aiming at router A
    assert curl(client, f"{URL}/latest/meta-data/instance-id")[0] == 0
    assert curl(client, f"http://{WAN_A}/")[0] == 0


def test_publish_replaces_the_records_atomically(world: World) -> None:
    records = world.router.run_dir / SPEC_A.key / "metadata.json"
    assert records.stat().st_mode & 0o777 == 0o600
    new = {"10.97.1.5": record("i-a1", "10.97.1.5", None), "10.97.1.6": record("i-a2", "10.97.1.6", b"x")}
    world.router.publish_metadata(SPEC_A.key, new)
    assert json.loads(records.read_text()) == new and records.stat().st_mode & 0o777 == 0o600
    assert curl(f"ivt{SFX}ma2", f"{URL}/latest/meta-data/instance-id") == (200, b"i-a2")
    assert curl(f"ivt{SFX}ma1", f"{URL}/latest/user-data")[0] == 404
    with pytest.raises(RouterError, match="bad metadata records"):
        world.router.publish_metadata(SPEC_A.key, {"10.97.1.5": {"user-data": None}})
    with pytest.raises(RouterError, match="does not exist"):
        world.router.publish_metadata(f"zz{SFX}", {})


def test_apply_restarts_a_dead_server_and_timings(world: World) -> None:
    router = world.router
    pid = router._metadata_pid(SPEC_A.key)
    assert pid is not None
    _sh.kill_and_wait(pid)
    assert router._metadata_pid(SPEC_A.key) is None
    started = time.perf_counter()
    router.apply(SPEC_A)
    apply_s = time.perf_counter() - started
    assert router._metadata_pid(SPEC_A.key) not in (None, pid)
    assert curl(f"ivt{SFX}ma1", f"{URL}/latest/meta-data/instance-id") == (200, b"i-a1")
    steady = router._metadata_pid(SPEC_A.key)
    router.apply(SPEC_A)
    assert router._metadata_pid(SPEC_A.key) == steady  # a running server is left alone
    median = float(subprocess.run(_sh.ns_exec(f"ivt{SFX}ma1", [sys.executable, "-c", LATENCY, METADATA_IP, "50"]),
                                  capture_output=True, text=True, check=True, timeout=60).stdout)
    print(f"\nmetadata server: apply() with restart {apply_s * 1000:.0f} ms; "
          f"GET instance-id from a farm namespace, median of 50: {median * 1000:.2f} ms")


def test_destroy_stops_the_server(world: World) -> None:
    extra = spec("c", 3, "203.0.113.42")
    bridge(world.cleanups, extra.lan_bridge)
    world.router.create(extra)
    pid = world.router._metadata_pid(extra.key)
    assert pid is not None
    addresses = _sh.run(["ip", "-n", netns_name(extra.key), "-br", "address", "show", "dev", "lan0"]).stdout
    assert f"{METADATA_IP}/32" in addresses
    world.router.destroy(extra.key)
    assert _sh.process_dead(pid) and not (world.router.run_dir / extra.key).exists()
