"""reconcile on the test driver: interrupted work, dead VMs, orphans of this cloud only, idempotence."""
from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable

import pytest

from drivers.hypervisor.domain_xml import DomainSpec, render_domain
from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.jobs import reconcile
from ivfarm.store.models import Farm, Instance


@pytest.fixture
def world(cloud: Cloud, fake_host: Callable[..., str], base_image) -> tuple[Cloud, str, Farm]:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    return cloud, hosts.list_hosts(cloud)[0].uri, lifecycle.create_farm(cloud, FarmRequest(name="lab"))


def running_vm(cloud: Cloud, farm: Farm, **kwargs) -> str:  # type: ignore[no-untyped-def]
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, **kwargs))
    provisioning.provision(cloud, instance.id)
    return instance.id


def state(cloud: Cloud, instance_id: str) -> str:
    with cloud.store.read() as session:
        return session.get(Instance, instance_id).state


def crashed_owner(cloud: Cloud, instance_id: str) -> None:
    """Make the instance look like the work of a process that died (as after a SIGKILL)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    with cloud.store.write() as session:
        session.get(Instance, instance_id).owner = f"{socket.gethostname()}:{gone.pid}"


def kinds(report: reconcile.ReconcileReport) -> list[tuple[str, str]]:
    return sorted((f.kind, f.action) for f in report.findings)


def test_a_clean_cloud_has_nothing_to_repair(world) -> None:  # type: ignore[no-untyped-def]
    cloud, _, farm = world
    running_vm(cloud, farm)
    report = reconcile.reconcile(cloud)
    assert report.findings == [] and report.errors == [] and report.usage["lab"]["instances"] == 1


def test_interrupted_provisioning_is_rolled_back_and_quota_released(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    [stuck] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    storage = cloud.storage("worker")
    storage.create_blank(uri, f"{stuck.id}-root.qcow2", 1024)  # half-built: a disk, no domain
    assert reconcile.reconcile(cloud).findings == []  # its process (this one) is alive: busy, not stuck
    crashed_owner(cloud, stuck.id)
    assert reconcile.reconcile(cloud, dry_run=True).findings[0].action == "roll back"
    assert state(cloud, stuck.id) == "pending" and storage.exists(uri, f"{stuck.id}-root.qcow2")
    report = reconcile.reconcile(cloud)
    assert kinds(report) == [("instance", "roll back")]
    assert state(cloud, stuck.id) == "terminated" and not storage.exists(uri, f"{stuck.id}-root.qcow2")
    assert report.usage["lab"]["instances"] == 0
    assert reconcile.reconcile(cloud).findings == []


def test_provisioning_that_finished_unrecorded_is_marked_running(world) -> None:  # type: ignore[no-untyped-def]
    cloud, _, farm = world
    instance_id = running_vm(cloud, farm)
    instances.set_state(cloud, instance_id, "pending")
    crashed_owner(cloud, instance_id)
    assert kinds(reconcile.reconcile(cloud)) == [("instance", "mark running")]
    assert state(cloud, instance_id) == "running"


def test_dead_vms_are_marked_stopped_or_restarted_by_policy(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    plain, critical = running_vm(cloud, farm), running_vm(cloud, farm, restart_policy="always")
    for instance_id in (plain, critical):
        cloud.hypervisor.stop(uri, domain_name(instance_id), force=True)
    assert kinds(reconcile.reconcile(cloud)) == [("instance", "mark stopped"), ("instance", "restart")]
    assert state(cloud, plain) == "stopped" and state(cloud, critical) == "running"
    assert cloud.hypervisor.status(uri, domain_name(critical)).state == "running"
    assert reconcile.reconcile(cloud).findings == []


def test_a_guest_poweroff_stops_or_terminates_by_shutdown_behavior(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    stops, ends = running_vm(cloud, farm), running_vm(cloud, farm, shutdown_behavior="terminate")
    for instance_id in (stops, ends):
        cloud.hypervisor.stop(uri, domain_name(instance_id), force=True)  # as the guest's own poweroff
    assert kinds(reconcile.reconcile(cloud)) == [("instance", "mark stopped"), ("instance", "terminate")]
    assert state(cloud, stops) == "stopped" and state(cloud, ends) == "terminated"
    with cloud.store.read() as session:
        assert session.get(Instance, ends).state_reason.startswith("Client.InstanceInitiatedShutdown")
    assert cloud.hypervisor.status(uri, domain_name(ends)) is None
    assert reconcile.reconcile(cloud).findings == []


def test_a_vanished_domain_terminates_its_instance(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = running_vm(cloud, farm)
    cloud.hypervisor.undefine(uri, domain_name(instance_id))
    assert kinds(reconcile.reconcile(cloud)) == [("instance", "terminate")]
    assert state(cloud, instance_id) == "terminated"
    assert cloud.storage("worker").list_names(uri) == []


def test_orphans_of_this_cloud_are_removed_and_foreign_ones_kept(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    keep = running_vm(cloud, farm)

    def define(instance_id: str, cloud_id: str) -> None:
        spec = DomainSpec(name=domain_name(instance_id), instance_id=instance_id, cloud=cloud_id, farm="x",
                          flavor="m1.small", image_id="ami-0", vcpus=1, memory_mb=64, domain_type="test")
        cloud.hypervisor.define_and_start(uri, render_domain(spec))

    define("i-00000000000000001", cloud.cloud_id)
    define("i-00000000000000002", "another-cloud")
    cloud.storage("worker").create_blank(uri, "i-00000000000000003-root.qcow2", 1024)
    cloud.seeds.write(uri, "i-00000000000000003.iso", b"seed")
    cloud.consoles.write(uri, "i-00000000000000003.log", b"log")
    cloud.hypervisor.connection(uri).networkDefineXML(
        "<network><name>ivfarm-net-150</name><bridge name='ivbr150'/></network>").create()
    report = reconcile.reconcile(cloud)
    assert kinds(report) == [("console log", "remove"), ("domain", "remove"), ("farm segment", "remove"),
                             ("seed", "remove"), ("volume", "remove")]
    names = [d.name for d in cloud.hypervisor.list_domains(uri)]
    assert domain_name("i-00000000000000001") not in names and domain_name("i-00000000000000002") in names
    assert domain_name(keep) in names and state(cloud, keep) == "running"
    assert reconcile.reconcile(cloud).findings == []


def test_a_half_created_farm_is_rolled_back(world) -> None:  # type: ignore[no-untyped-def]
    cloud, _, _ = world
    with cloud.store.write() as session:
        session.query(Farm).filter_by(name="lab").one().status = "creating"
    assert kinds(reconcile.reconcile(cloud)) == [("farm", "roll back")]
    assert lifecycle.list_farms(cloud) == []


def test_a_stale_copy_on_another_host_is_removed(world, fake_host) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = running_vm(cloud, farm)
    hosts.add_host(cloud, "w2", fake_host("w2"), "worker")
    other = next(h.uri for h in hosts.list_hosts(cloud) if h.name == "w2")
    xml = cloud.hypervisor.domain_xml(uri, domain_name(instance_id))
    cloud.hypervisor.define_and_start(other, xml)  # as left on a fenced host that came back
    cloud.storage("worker").create_blank(other, f"{instance_id}-root.qcow2", 1024)
    report = reconcile.reconcile(cloud)
    assert [(f.kind, f.action) for f in report.findings] == [("domain", "remove")]
    assert "stale copy on w2" in report.findings[0].detail
    assert cloud.hypervisor.status(other, domain_name(instance_id)) is None
    assert not cloud.storage("worker").exists(other, f"{instance_id}-root.qcow2")
    assert cloud.hypervisor.status(uri, domain_name(instance_id)).state == "running"
    assert reconcile.reconcile(cloud).findings == []
