"""Farm create and delete with the netns router on the real host: complete, and rolled back on failure."""
from __future__ import annotations

import subprocess

import libvirt
import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import IvfarmError
from ivfarm.services.farms import lifecycle
from ivfarm.store.models import Address, Farm, SecurityGroup, SecurityGroupRule

pytestmark = [pytest.mark.root, pytest.mark.libvirtd]


def leftovers(cloud: Cloud, vlan: int) -> list[str]:
    """Everything of a farm's network that is still on this machine."""
    found = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    for name in (f"ivbr{vlan}", f"ivlr{vlan}", f"ivwr{vlan}"):
        if f" {name}:" in links or f" {name}@" in links:
            found.append(f"link {name}")
    if f"ivfarm-r{vlan}" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
        found.append("namespace")
    conn = libvirt.open("qemu:///system")
    try:
        if f"ivfarm-net-{vlan}" in [n.name() for n in conn.listAllNetworks()]:
            found.append("libvirt network")
    finally:
        conn.close()
    if (cloud.config.state_dir / "run" / "routers" / f"r{vlan}").exists():
        found.append("router run directory")
    if f"/r{vlan}/" in subprocess.run(["pgrep", "-a", "dnsmasq"], capture_output=True, text=True).stdout:
        found.append("dnsmasq")
    return found


def test_create_then_delete_leaves_nothing(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns")
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="short-lived"))
    assert set(leftovers(cloud, farm.vlan)) >= {"namespace", "libvirt network", "dnsmasq"}
    lifecycle.delete_farm(cloud, "short-lived")
    assert leftovers(cloud, farm.vlan) == []
    with cloud.store.read() as session:
        assert session.query(Farm).count() == 0 and session.query(Address).count() == 0


def test_a_router_that_cannot_be_built_rolls_everything_back(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns")
    vlan = cloud.config.get("network.vlan_range")[0]
    squatter = f"ivlr{vlan}"  # an interface already holding the name of the router's LAN veth
    subprocess.run(["ip", "link", "add", squatter, "type", "bridge"], check=True)
    try:
        with pytest.raises(IvfarmError):
            lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="doomed"))
        assert lifecycle.list_farms(cloud) == []
        assert [item for item in leftovers(cloud, vlan) if item != f"link {squatter}"] == []
        with cloud.store.read() as session:
            assert session.query(Address).count() == 0
    finally:
        subprocess.run(["ip", "link", "del", squatter], check=False)
    assert lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="doomed")).vlan == vlan


def test_reconcile_rebuilds_a_lost_router_and_removes_an_orphan_one(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    from ivfarm.services.jobs import reconcile

    cloud = real_cloud_factory(router="netns")
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="survivor"))
    backend = cloud.router_backend("netns")
    backend.destroy(f"r{farm.vlan}")  # as after a reboot of the router host
    doomed = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="forgotten"))
    with cloud.store.write() as session:  # the store lost this farm, its router stayed behind
        session.query(Address).filter_by(farm_id=doomed.id).delete()
        groups = [g.id for g in session.query(SecurityGroup).filter_by(farm_id=doomed.id)]
        session.query(SecurityGroupRule).filter(SecurityGroupRule.group_id.in_(groups)).delete()
        session.query(SecurityGroup).filter_by(farm_id=doomed.id).delete()
        session.query(Farm).filter_by(id=doomed.id).delete()
    report = reconcile.reconcile(cloud)
    assert sorted((f.kind, f.target, f.action) for f in report.findings) == sorted([
        ("farm segment", f"local:vlan {doomed.vlan}", "remove"),
        ("router", f"r{doomed.vlan}", "remove"),
        ("router", f"r{farm.vlan}", "rebuild"),
    ])
    assert backend.exists(f"r{farm.vlan}") and leftovers(cloud, doomed.vlan) == []
    assert reconcile.reconcile(cloud).findings == []
