"""Worker hosts for real: cold migration and drain between two libvirtds, failure recovery by policy."""
from __future__ import annotations

import json
import sys

import pytest

from drivers.storage.base import disk_names
from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.store.models import Instance
from tests.integration import multihost, second_libvirtd
from tests.integration.cli import ivfarm
from tests.integration.conftest import wait_for_console

two_hosts = multihost.two_hosts  # the fixture
pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]


def placed(cloud: Cloud, instance_id: str) -> tuple[str, str]:
    with cloud.store.read() as session:
        instance = session.get(Instance, instance_id)
        return instance.host.name, instance.state


def test_worker_vm_cold_migrates_with_its_disk_and_drains_back(two_hosts) -> None:  # type: ignore[no-untyped-def]
    cloud, second = two_hosts("worker")
    uris = {"hv-a": "qemu:///system", "hv-b": second.uri}
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", name="batch"))
    provisioning.provision(cloud, vm.id)
    wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")
    first, _ = placed(cloud, vm.id)
    other = "hv-b" if first == "hv-a" else "hv-a"

    moved = ivfarm(cloud, "vm", "migrate", "batch")
    assert moved.returncode == 0, moved.stderr
    assert f"{vm.id} migrated cold from {first} to {other}" in moved.stdout
    assert placed(cloud, vm.id) == (other, "running")
    wait_for_console(cloud, vm.id, "rootfs ok boots=2")  # the boot counter came along: the disk moved
    storage, root = cloud.storage("worker"), disk_names(vm.id)[0]
    assert storage.exists(uris[other], root) and not storage.exists(uris[first], root)
    assert f"{vm.id}.iso" not in cloud.seeds.list_names(uris[first])

    drained = ivfarm(cloud, "host", "drain", other, "--output", "json")
    assert drained.returncode == 0, drained.stderr
    [result] = json.loads(drained.stdout)["moved"]
    assert (result["instance_id"], result["mode"], result["target"]) == (vm.id, "cold", first)
    assert placed(cloud, vm.id) == (first, "running")
    assert not hosts.show_host(cloud, other).enabled
    wait_for_console(cloud, vm.id, "rootfs ok boots=3")
    assert ivfarm(cloud, "host", "enable", other).returncode == 0
    assert hosts.show_host(cloud, other).enabled


def test_worker_vms_of_a_dead_host_are_recreated_elsewhere_by_policy(two_hosts) -> None:  # type: ignore[no-untyped-def]
    cloud, second = two_hosts("worker")
    cloud.config.data["hosts"].update(worker_failure_policy="recreate",
                                      fence_command=f"{sys.executable} {second_libvirtd.__file__} fence {second.root}")
    hosts.set_enabled(cloud, "hv-a", False)  # place it on hv-b
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny"))
    hosts.set_enabled(cloud, "hv-a", True)
    provisioning.provision(cloud, vm.id)
    wait_for_console(cloud, vm.id, "rootfs ok boots=1")
    with cloud.store.read() as session:
        before = session.get(Instance, vm.id)
        address = (before.ip, before.mac)

    second.kill_libvirtd()
    report = {h.host: h for h in check_hosts(cloud, grace_s=0).hosts}["hv-b"]
    assert (report.status, report.action) == ("fenced", "failed-over")
    [recovery] = report.instances
    assert (recovery.instance_id, recovery.action, recovery.target) == (vm.id, "recreated", "hv-a")
    assert placed(cloud, vm.id) == ("hv-a", "running")
    wait_for_console(cloud, vm.id, "rootfs ok boots=1")  # a new disk from the image: its host's disk is lost
    with cloud.store.read() as session:
        after = session.get(Instance, vm.id)
        assert (after.ip, after.mac) == address and "Server.HostFailure" in after.state_reason
