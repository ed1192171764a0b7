"""Farms spanning two hypervisors over VXLAN, with real VMs, on the namespaced multi-host site.

Three hosts (each a network namespace with its own libvirtd, joined by an underlay bridge): the
farm routers (netns backend) on the third, a network host; farm alpha and farm beta each have a VM
on each of the first two. As a
user sees it: every VM gets its lease from its farm's router across the segment, the two VMs of a
farm reach each other and the router, the other farm reaches neither, each host's forwarding
database points exactly at the other host; after a VM of each farm moves (and after a host is
drained) the forwarding follows and the isolation holds; after the farms are gone no link of theirs
remains, and after the site is destroyed no namespace of it.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from drivers.network.base import bridge_name
from drivers.network.vxlan import FLOOD_MAC, vxlan_name
from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, migration, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.tenancy import security_groups
from ivfarm.services.tenancy.security_groups import GroupRef, Permission
from ivfarm.store.models import Farm, Instance
from tests.integration import multihost_site
from tests.integration.conftest import TEST_ROOT, wait_for_console
from tests.integration.guest import guest_exec
from tests.integration.multihost_site import Site, SiteHost

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]


@pytest.fixture
def site() -> Iterator[Site]:
    tag = uuid.uuid4().hex[:6]
    state = TEST_ROOT / f"vx{tag}"  # the cloud's state directory: each host gets its own disks
    private = [state / "disks"]  # seeds and console logs: this machine's files (its URIs are local)
    for directory in private:
        directory.mkdir(mode=0o755, parents=True)
    made = multihost_site.create(TEST_ROOT / f"vx{tag}-site", f"ivt{tag}", 3, private)
    yield made
    made.destroy()
    assert multihost_site.leftovers(made.prefix) == []


@pytest.fixture
def cloud(site: Site, real_cloud_factory: Callable[..., Cloud]) -> Cloud:
    """A cloud whose hypervisors are the site's hosts (torn down before the site: fixture order)."""
    state = site.root.parent / site.root.name.removesuffix("-site")
    made = real_cloud_factory(router="netns", state_dir=str(state), network={"segments": "vxlan"},
                              vrouter={"backend": "netns", "host_uri": site.hosts[2].uri})
    hosts.remove_host(made, "local")
    for host, host_class in zip(site.hosts, ("worker", "worker", "service"), strict=True):  # no worker VM on h3
        hosts.add_host(made, host.name, host.uri, host_class, underlay_address=host.underlay, netns=host.name)
    return made


def boot_on(cloud: Cloud, farm: Farm, name: str, host: SiteHost, site: Site) -> Instance:
    for other in site.hosts[:2]:
        hosts.set_enabled(cloud, other.name, other is host)
    [instance] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, name=name))
    provisioning.provision(cloud, instance.id)
    for other in site.hosts[:2]:
        hosts.set_enabled(cloud, other.name, True)
    return instance


def remote_fdb(host: SiteHost, vlan: int) -> set[tuple[str, str]]:
    """(MAC, destination) of the host's VXLAN entries toward other hosts for the farm's segment."""
    out = subprocess.run(["ip", "netns", "exec", host.name, "bridge", "-j", "fdb", "show", "dev", vxlan_name(vlan)],
                         capture_output=True, text=True, check=True).stdout
    return {(e["mac"], e["dst"]) for e in json.loads(out) if "dst" in e}


def links(host: SiteHost) -> str:
    return subprocess.run(["ip", "netns", "exec", host.name, "ip", "-o", "link"], capture_output=True, text=True,
                          check=True).stdout


def ping(vm: Instance, host: SiteHost, address: str) -> bool:
    return guest_exec(vm.id, f"ping -c 1 -W 2 {address}", uri=host.uri)[0] == 0


def reaches(vm: Instance, host: SiteHost, address: str) -> bool:
    """A VM that has just moved (cold: it boots again and asks for its lease) answers within 40 s."""
    return guest_exec(vm.id, f"for i in $(seq 20); do ping -c 1 -W 2 {address} && break; done", 90,
                      uri=host.uri)[0] == 0


def test_farms_span_two_hosts_over_vxlan_isolated_and_leave_nothing(site: Site, cloud: Cloud) -> None:
    h1, h2, h3 = site.hosts
    alpha = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="alpha"))
    beta = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="beta"))
    a1, a2 = boot_on(cloud, alpha, "a1", h1, site), boot_on(cloud, alpha, "a2", h2, site)
    b1, b2 = boot_on(cloud, beta, "b1", h1, site), boot_on(cloud, beta, "b2", h2, site)
    for vm in (a1, a2, b1, b2):  # every VM gets its lease from its router on h3, across VXLAN
        assert f"IVFARM-GUEST: ip={vm.ip}" in wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")

    # each host forwards the farm's traffic to exactly the other hosts of the farm, remote VMs' MACs included
    assert remote_fdb(h1, alpha.vlan) == {(FLOOD_MAC, h2.underlay), (a2.mac, h2.underlay), (FLOOD_MAC, h3.underlay)}
    assert remote_fdb(h2, alpha.vlan) == {(FLOOD_MAC, h1.underlay), (a1.mac, h1.underlay), (FLOOD_MAC, h3.underlay)}
    assert remote_fdb(h3, beta.vlan) == {(FLOOD_MAC, h1.underlay), (b1.mac, h1.underlay),
                                         (FLOOD_MAC, h2.underlay), (b2.mac, h2.underlay)}

    router_a, router_b = alpha.cidr.replace(".0/24", ".1"), beta.cidr.replace(".0/24", ".1")
    assert ping(a2, h2, a1.ip) and ping(a2, h2, router_a)
    assert ping(b1, h1, b2.ip)
    assert not ping(a2, h2, b1.ip) and not ping(a2, h2, router_b)
    assert not ping(b2, h2, a1.ip)

    # a VM of each farm moves to the other host: the forwarding follows, the isolation holds
    assert migration.migrate(cloud, a2.id, h1.name).target == h1.name
    assert migration.migrate(cloud, b1.id, h2.name).target == h2.name
    assert remote_fdb(h1, alpha.vlan) == {(FLOOD_MAC, h3.underlay)}  # alpha's VMs are all on h1 now
    assert remote_fdb(h3, alpha.vlan) == {(FLOOD_MAC, h1.underlay), (a1.mac, h1.underlay), (a2.mac, h1.underlay)}
    assert f"{vxlan_name(alpha.vlan)}:" not in links(h2) or remote_fdb(h2, alpha.vlan) == set()
    assert remote_fdb(h2, beta.vlan) == {(FLOOD_MAC, h3.underlay)}  # and beta's on h2
    assert remote_fdb(h3, beta.vlan) == {(FLOOD_MAC, h2.underlay), (b1.mac, h2.underlay), (b2.mac, h2.underlay)}
    assert f"{vxlan_name(beta.vlan)}:" not in links(h1) or remote_fdb(h1, beta.vlan) == set()
    assert reaches(a2, h1, a1.ip) and reaches(b1, h2, router_b)
    assert not ping(b1, h2, a2.ip)

    # draining h2 moves beta's VMs to h1: no host keeps an entry toward h2, and h2 none toward h1
    report = migration.drain(cloud, h2.name)
    assert sorted(m.instance_id for m in report.moved) == sorted([b1.id, b2.id]) and not report.failed
    assert remote_fdb(h1, beta.vlan) == {(FLOOD_MAC, h3.underlay)}
    assert remote_fdb(h3, beta.vlan) == {(FLOOD_MAC, h1.underlay), (b1.mac, h1.underlay), (b2.mac, h1.underlay)}
    assert f"{vxlan_name(beta.vlan)}:" not in links(h2) or remote_fdb(h2, beta.vlan) == set()
    assert reaches(b2, h1, b1.ip) and reaches(b1, h1, b2.ip) and not ping(b2, h1, a1.ip)

    lifecycle.delete_farm(cloud, "alpha")
    lifecycle.delete_farm(cloud, "beta")
    for host in (h1, h2, h3):
        present = links(host)
        for vlan in (alpha.vlan, beta.vlan):
            assert f"{vxlan_name(vlan)}:" not in present and f"{bridge_name(vlan)}:" not in present


@pytest.fixture
def service_cloud(site: Site, real_cloud_factory: Callable[..., Cloud]) -> Cloud:
    """Service hosts h1 and h2 on a disks directory both see (live migration); routers on h3."""
    state = site.root.parent / site.root.name.removesuffix("-site")
    made = real_cloud_factory(router="netns", state_dir=str(state), network={"segments": "vxlan"},
                              vrouter={"backend": "netns", "host_uri": site.hosts[2].uri},
                              storage={"service": {"backend": "shared", "shared": {"dir": str(state / "shared")}}})
    hosts.remove_host(made, "local")
    for host, host_class in zip(site.hosts, ("service", "service", "worker"), strict=True):  # no service VM on h3
        hosts.add_host(made, host.name, host.uri, host_class, underlay_address=host.underlay, netns=host.name)
    return made


def test_a_service_vm_moves_live_keeping_its_address_and_the_fdb_follows(site: Site, service_cloud: Cloud) -> None:
    cloud, (h1, h2, h3) = service_cloud, site.hosts
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="gamma"))
    security_groups.authorize(cloud, farm.id, GroupRef(name="default"), False, [Permission("icmp", -1, -1, "0.0.0.0/0")])
    hosts.set_enabled(cloud, h2.name, False)
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, name="s1",
                                                 host_class="service"))
    provisioning.provision(cloud, vm.id)
    hosts.set_enabled(cloud, h2.name, True)
    assert f"IVFARM-GUEST: ip={vm.ip}" in wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")
    assert remote_fdb(h3, farm.vlan) == {(FLOOD_MAC, h1.underlay), (vm.mac, h1.underlay)}

    # the router on h3 pings the VM through the move, five times a second
    pinger = subprocess.Popen(["ip", "netns", "exec", f"ivfarm-r{farm.vlan}", "busybox", "ping", "-i", "0.2",
                               "-w", "25", vm.ip], stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    result = migration.migrate(cloud, vm.id, h2.name)
    out, _ = pinger.communicate(timeout=60)
    assert (result.mode, result.target) == ("live", h2.name)
    sent, received = (int(n) for n in re.findall(r"(\d+) packets transmitted, (\d+) packets received", out)[0])
    assert sent - received <= 10, out  # at most two seconds of replies lost
    assert remote_fdb(h3, farm.vlan) == {(FLOOD_MAC, h2.underlay), (vm.mac, h2.underlay)}
    assert f"{vxlan_name(farm.vlan)}:" not in links(h1) or remote_fdb(h1, farm.vlan) == set()
    with cloud.store.read() as session:
        assert session.get_one(Instance, vm.id).ip == vm.ip
    assert ping(vm, h2, farm.cidr.replace(".0/24", ".1"))
