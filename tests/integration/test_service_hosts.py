"""Service hosts for real: a VM's disk on a GlusterFS volume, live migration between two libvirtds."""
from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator

import libvirt
import pytest

from ivfarm.services.compute import hosts, instances, migration, provisioning
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.store.models import Instance
from tests.integration import multihost, second_libvirtd
from tests.integration.conftest import TEST_ROOT, wait_for_console
from tests.integration.gluster import GlusterVolume, start_volume
from tests.support.polling import poll_until

two_hosts = multihost.two_hosts  # the fixture
pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm, pytest.mark.gluster]
TICK = re.compile(r"IVFARM-GUEST: tick (\d+)")


@pytest.fixture
def volume() -> Iterator[GlusterVolume]:
    tag = uuid.uuid4().hex[:6]
    started = start_volume(TEST_ROOT / f"gl-{tag}", f"ivt{tag}")
    yield started
    started.stop()


def gluster_config(volume: GlusterVolume) -> dict[str, object]:
    return {"service": {"backend": "gluster", "gluster": {
        "volume": volume.name, "hosts": [volume.server], "mount": str(volume.root / "mnt")}}}


def last_tick(cloud, instance_id: str) -> int:  # type: ignore[no-untyped-def]
    ticks = TICK.findall(instances.console_output(cloud, instance_id).decode("utf-8", "replace"))
    return int(ticks[-1]) if ticks else -1


def wait_for_tick_after(cloud, instance_id: str, tick: int, timeout_s: float = 90) -> str:  # type: ignore[no-untyped-def]
    """Wait until the console shows a tick beyond ``tick + 1``; returns the log."""
    poll_until(lambda: last_tick(cloud, instance_id) > tick + 1, timeout_s, 0.5,
               lambda: instances.console_output(cloud, instance_id)[-2000:].decode("utf-8", "replace"))
    return instances.console_output(cloud, instance_id).decode("utf-8", "replace")


def host_of(cloud, instance_id: str) -> str:  # type: ignore[no-untyped-def]
    with cloud.store.read() as session:
        return session.get(Instance, instance_id).host.name


def test_service_vm_boots_from_gluster_and_live_migrates_both_ways(volume: GlusterVolume, two_hosts) -> None:  # type: ignore[no-untyped-def]
    cloud, second = two_hosts("service", storage=gluster_config(volume))
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", host_class="service", name="svc"))
    provisioning.provision(cloud, vm.id)
    wait_for_tick_after(cloud, vm.id, 0)
    # the overlay and its base image are files of the GlusterFS volume (seen in its brick)
    bricked = {p.name for p in volume.brick.iterdir()}
    assert f"{vm.id}-root.qcow2" in bricked
    assert {name for name in bricked if name.startswith("base-ami-")} >= {f"base-{vm.image_id}.raw"}

    first = host_of(cloud, vm.id)
    for _ in range(2):  # there and back again
        source = host_of(cloud, vm.id)
        before = last_tick(cloud, vm.id)
        result = migration.migrate(cloud, vm.id)
        assert (result.mode, result.source, result.state) == ("live", source, "running")
        assert host_of(cloud, vm.id) == result.target != source
        log = wait_for_tick_after(cloud, vm.id, max(before, last_tick(cloud, vm.id)))
        ticks = [int(t) for t in TICK.findall(log)]
        assert ticks == sorted(ticks) and ticks[-1] > before  # the counter went on: the guest never restarted
        assert log.count("IVFARM-GUEST: booted") == 1
        gone_from = libvirt.open(second.uri if source == "hv-b" else "qemu:///system")
        with pytest.raises(libvirt.libvirtError):
            gone_from.lookupByName(domain_name(vm.id))
        gone_from.close()
    assert host_of(cloud, vm.id) == first


def test_service_vm_restarts_from_the_volume_when_its_host_dies(volume: GlusterVolume, two_hosts) -> None:  # type: ignore[no-untyped-def]
    cloud, second = two_hosts("service", storage=gluster_config(volume))
    cloud.config.data["hosts"]["fence_command"] = f"{sys.executable} {second_libvirtd.__file__} fence {second.root}"
    hosts.set_enabled(cloud, "hv-a", False)  # place it on hv-b
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", host_class="service"))
    hosts.set_enabled(cloud, "hv-a", True)
    provisioning.provision(cloud, vm.id)
    wait_for_tick_after(cloud, vm.id, 0)
    assert host_of(cloud, vm.id) == "hv-b"

    second.kill_libvirtd()  # hv-b stops answering; its guest still runs until it is fenced
    waiting = {h.host: h for h in check_hosts(cloud, grace_s=300).hosts}
    assert (waiting["hv-a"].status, waiting["hv-a"].action) == ("up", "none")
    assert (waiting["hv-b"].status, waiting["hv-b"].action, waiting["hv-b"].instances) == ("unreachable", "waiting", [])
    assert host_of(cloud, vm.id) == "hv-b"

    report = {h.host: h for h in check_hosts(cloud, grace_s=0).hosts}["hv-b"]
    assert (report.status, report.action, report.fence["exit_code"]) == ("fenced", "failed-over", 0)
    [recovery] = report.instances
    assert (recovery.instance_id, recovery.action, recovery.target) == (vm.id, "restarted", "hv-a")
    assert host_of(cloud, vm.id) == "hv-a"
    wait_for_console(cloud, vm.id, "rootfs ok boots=2")  # the same disk, from the shared volume
    with cloud.store.read() as session:
        assert session.get(Instance, vm.id).state == "running"
    assert hosts.show_host(cloud, "hv-b").status == "fenced"
