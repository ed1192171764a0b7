"""netns router lifecycle: rollback on failure, complete removal, orphan discovery, self-healing,
the public segment's two modes, and create/destroy timings. Real namespaces, no traffic beyond
the bridges and namespaces made here."""
from __future__ import annotations

import json
import secrets
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.public_clients import client_namespace, client_veth
from vrouter import _sh
from vrouter.errors import RouterError
from vrouter.netns import NetnsRouter, lan_veth, netns_name, wan_veth
from vrouter.public import PublicSegment
from vrouter.spec import Lease, PortForward, RouterSpec

pytestmark = pytest.mark.root  # tests/conftest.py skips it (or fails it in CI) when unmet

SFX = secrets.token_hex(2)
PUB_NS = f"ivt{SFX}pubq"
PUB = PublicSegment(bridge=f"ivtq{SFX}", netns=PUB_NS, cidr="203.0.113.0/24", gateway="203.0.113.1")
BRIDGE = f"ivtc{SFX}"


def spec(key: str, **changes: object) -> RouterSpec:
    data = dict(
        key=key, farm="lifecycle", lan_cidr="10.98.0.0/22", lan_ip="10.98.0.1", lan_bridge=BRIDGE,
        wan_ip="203.0.113.30", wan_prefix=24, wan_gateway=PUB.gateway, dns_forwarders=(PUB.gateway,),
        leases=tuple(Lease(f"02:00:0a:62:00:{i:02x}", f"10.98.0.{i}", f"w{i}") for i in range(2, 40)),
        forwards=(PortForward("tcp", 2222, "10.98.0.2", 22), PortForward("udp", 5000, "10.98.0.3", 5000)),
        elastic_ip="203.0.113.31", elastic_target="10.98.0.2",
    )
    data.update(changes)
    return RouterSpec(**data)  # type: ignore[arg-type]


def bridge_add(name: str) -> None:
    _sh.ip_batch([f"link add {name} type bridge"])
    _sh.host_sysctl_disable_ipv6(name)
    _sh.ip_batch([f"link set {name} up"])


def dnsmasq_pids(run_dir: Path) -> list[int]:
    """Live (not zombie) dnsmasq processes whose command line points into run_dir."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
            continue
        if b"dnsmasq" in cmdline and str(run_dir).encode() in cmdline and not _sh.process_dead(int(proc.name)):
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def env(tmp_path: Path, dhcp_dir: Path) -> Iterator[NetnsRouter]:
    router = NetnsRouter(PUB, tmp_path / "run", dhcp_dir)
    PUB.ensure()
    bridge_add(BRIDGE)
    try:
        yield router
    finally:
        for key in router.list_keys():
            try:
                router.destroy(key)
            except RouterError as exc:
                print(f"cleanup of {key} failed: {exc}")
        PUB.destroy()
        _sh.link_delete(BRIDGE)
        leftovers = [n for n in _sh.netns_names() if SFX in n] + [
            p.name for p in Path("/sys/class/net").iterdir() if SFX in p.name
        ]
        assert not leftovers, f"left behind: {leftovers}"
        assert dnsmasq_pids(tmp_path / "run") == []


def assert_gone(router: NetnsRouter, key: str) -> None:
    assert not router.exists(key)
    assert not _sh.netns_exists(netns_name(key))
    assert not _sh.link_exists(lan_veth(key))
    assert not _sh.link_exists(wan_veth(key)) and not _sh.link_exists(wan_veth(key), PUB_NS)
    assert not (router.run_dir / key).exists()
    assert dnsmasq_pids(router.run_dir) == []
    assert key not in router.list_keys()


def test_create_then_destroy_leaves_nothing(env: NetnsRouter) -> None:
    env.create(spec("lc1"))
    assert env.exists("lc1") and env.list_keys() == ["lc1"]
    assert _sh.link_exists(wan_veth("lc1"), PUB_NS)          # WAN end moved onto the public bridge
    assert Path(f"/sys/class/net/{lan_veth('lc1')}/master").resolve().name == BRIDGE
    assert len(dnsmasq_pids(env.run_dir)) == 1
    saved = json.loads((env.run_dir / "lc1" / "spec.json").read_text())
    assert RouterSpec.from_dict(saved) == spec("lc1")
    env.destroy("lc1")
    assert_gone(env, "lc1")
    env.destroy("lc1")  # again: missing pieces are fine


def test_missing_lan_bridge_is_refused_before_anything_is_made(env: NetnsRouter) -> None:
    with pytest.raises(RouterError, match="LAN bridge ivtnone does not exist"):
        env.create(spec("lc2", lan_bridge="ivtnone"))
    assert_gone(env, "lc2")


def test_failure_midway_rolls_back(env: NetnsRouter, tmp_path: Path) -> None:
    broken = NetnsRouter(PUB, env.run_dir, env.dhcp_dir, dnsmasq="/bin/false")  # fails at the very last step
    with pytest.raises(RouterError, match="creating router lc3 .*dnsmasq failed to start"):
        broken.create(spec("lc3"))
    assert_gone(env, "lc3")


def test_failure_after_the_namespace_exists_rolls_back(env: NetnsRouter) -> None:
    """A stale host link with the router's veth name (left by a crash) breaks create() after
    the namespace and run dir were made: everything must go, the stale link with it."""
    _sh.ip_batch([f"link add {lan_veth('lc5')} type bridge"])
    with pytest.raises(RouterError, match=f"creating router lc5 .*{lan_veth('lc5')}"):
        env.create(spec("lc5"))
    assert_gone(env, "lc5")


def test_list_keys_finds_orphans(env: NetnsRouter) -> None:
    env.create(spec("lc6"))
    # orphan 1: the namespace of a router whose run dir was lost
    shutil.rmtree(env.run_dir / "lc6")
    # orphan 2: a run dir whose namespace was deleted by hand
    (env.run_dir / "lc7").mkdir()
    # not a router: an ivfarm-<key>-looking namespace without router links
    stranger = netns_name(f"q{SFX}")
    _sh.netns_add(stranger)
    try:
        assert env.list_keys() == ["lc6", "lc7"]
        for key in env.list_keys():
            env.destroy(key)
        assert_gone(env, "lc6")
        assert_gone(env, "lc7")
        assert _sh.netns_exists(stranger)
    finally:
        _sh.netns_delete(stranger)


def test_apply_restarts_a_dead_dnsmasq(env: NetnsRouter) -> None:
    env.create(spec("lc8"))
    pid = env._dnsmasq_pid("lc8")
    assert pid is not None
    _sh.kill_and_wait(pid)
    assert env._dnsmasq_pid("lc8") is None
    env.apply(spec("lc8"))
    assert env._dnsmasq_pid("lc8") not in (None, pid)


def test_changed_forwarders_restart_only_dnsmasq(env: NetnsRouter) -> None:
    env.create(spec("lc9"))
    pid = env._dnsmasq_pid("lc9")
    env.apply(spec("lc9", dns_forwarders=("203.0.113.53", "203.0.113.54")))
    new = env._dnsmasq_pid("lc9")
    assert new not in (None, pid)
    assert b"--server=203.0.113.54" in Path(f"/proc/{new}/cmdline").read_bytes()
    assert _sh.netns_exists(netns_name("lc9"))


def test_public_segment_is_idempotent_and_clients_clean_up(env: NetnsRouter) -> None:
    PUB.ensure()
    PUB.ensure()
    out = _sh.run(["ip", "-n", PUB_NS, "-br", "addr", "show", "dev", PUB.bridge]).stdout
    assert out.count("203.0.113.1/24") == 1
    with client_namespace(PUB, f"ivt{SFX}c", "203.0.113.77") as ns:
        assert _sh.link_exists(client_veth(ns), PUB_NS)
        assert _sh.run(_sh.ns_exec(ns, ["busybox", "ping", "-c", "1", "-W", "1", PUB.gateway])).returncode == 0
    assert not _sh.netns_exists(f"ivt{SFX}c") and not _sh.link_exists(client_veth(f"ivt{SFX}c"), PUB_NS)


def test_site_bridge_mode(env: NetnsRouter) -> None:
    """netns=None: the public side is an existing host bridge; nothing is created for it."""
    site = PublicSegment(bridge=f"ivts{SFX}", netns=None, cidr="203.0.113.0/24", gateway="203.0.113.1")
    with pytest.raises(RouterError, match="does not exist"):
        site.ensure()
    bridge_add(site.bridge)
    try:
        router = NetnsRouter(site, env.run_dir, env.dhcp_dir)
        router.create(spec("lc10"))
        assert Path(f"/sys/class/net/{wan_veth('lc10')}/master").resolve().name == site.bridge
        router.destroy("lc10")
        assert not _sh.link_exists(wan_veth("lc10"))
        site.destroy()  # no-op for a site bridge
        assert _sh.link_exists(site.bridge)
    finally:
        _sh.link_delete(site.bridge)


def test_create_and_destroy_times(env: NetnsRouter) -> None:
    creates, destroys = [], []
    for _ in range(5):
        started = time.perf_counter()
        env.create(spec("lct"))
        creates.append(time.perf_counter() - started)
        started = time.perf_counter()
        env.destroy("lct")
        destroys.append(time.perf_counter() - started)
    figures = {"create_s": round(statistics.median(creates), 3), "destroy_s": round(statistics.median(destroys), 3)}
    print(f"\nnetns router (38 leases, 2 forwards, EIP bound), median of 5: {json.dumps(figures)}")
    assert figures["create_s"] < 2 and figures["destroy_s"] < 1


def test_create_over_a_remnant_run_dir(env: NetnsRouter) -> None:
    """After a reboot the namespace is gone but a persistent run dir may remain: create() clears it."""
    env.create(spec("lc11"))
    pid = env._dnsmasq_pid("lc11")
    assert pid is not None
    _sh.kill_and_wait(pid)
    _sh.netns_delete(netns_name("lc11"))
    assert not env.exists("lc11") and "lc11" in env.list_keys()
    env.create(spec("lc11"))
    assert env.exists("lc11") and env._dnsmasq_pid("lc11") is not None


def test_namespace_deleted_by_hand_with_dnsmasq_alive(env: NetnsRouter) -> None:
    """`ip netns del` only drops the name while dnsmasq still holds the namespace (and its veths
    on our bridges); destroy() must still find and stop it through the pid file."""
    env.create(spec("lc12"))
    _sh.run(["ip", "netns", "del", netns_name("lc12")])
    assert _sh.link_exists(lan_veth("lc12"))  # still there, held by dnsmasq
    env.destroy("lc12")
    assert_gone(env, "lc12")
