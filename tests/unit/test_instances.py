"""Instance lifecycle on libvirt's test driver: placement, domains, disks, rollback, teardown."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidInput, InvalidState, IvfarmError, NotFound, NoValidHost
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.store.models import Instance


def run(cloud: Cloud, **kwargs) -> list[Instance]:  # type: ignore[no-untyped-def]
    launched = instances.launch(cloud, LaunchRequest(**{"image": "base", "flavor": "m1.small", **kwargs}))
    for instance in launched:
        provisioning.provision(cloud, instance.id)
    return launched


def host_uri(cloud: Cloud, name: str) -> str:
    return next(h.uri for h in hosts.list_hosts(cloud) if h.name == name)


@pytest.fixture
def two_classes(cloud: Cloud, fake_host: Callable[..., str], base_image) -> Cloud:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "wn1", fake_host("wn1", cpus=2, memory_mb=2048), "worker")
    hosts.add_host(cloud, "wn2", fake_host("wn2", cpus=2, memory_mb=2048), "worker")
    hosts.add_host(cloud, "svc1", fake_host("svc1", cpus=4, memory_mb=4096), "service")
    return cloud


def test_classes_land_on_their_own_hosts(two_classes: Cloud) -> None:
    workers = run(two_classes, count=3)
    [service] = run(two_classes, host_class="service")
    with two_classes.store.read() as session:
        assert {session.get(Instance, i.id).host.name for i in workers} <= {"wn1", "wn2"}
        assert session.get(Instance, service.id).host.name == "svc1"


def test_domain_is_built_from_the_flavor_and_tagged_with_the_id(two_classes: Cloud) -> None:
    [instance] = run(two_classes, flavor="m1.medium", name="head")
    with two_classes.store.read() as session:
        uri = session.get(Instance, instance.id).host.uri
    xml = ET.fromstring(two_classes.hypervisor.domain_xml(uri, domain_name(instance.id)))
    assert xml.findtext("vcpu") == "2"
    assert int(xml.findtext("memory")) == 2048 * 1024
    assert xml.find(".//{https://ivfarm.org/xmlns/libvirt/1.0}instance/id").text == instance.id
    disks = [d.find("source").get("file") for d in xml.findall("devices/disk")]
    assert disks[0].endswith(f"{instance.id}-root.qcow2") and disks[1].endswith(f"{instance.id}-ephemeral.qcow2")
    assert disks[2].endswith(f"{instance.id}.iso")
    assert xml.find("devices/serial/log").get("file").endswith(f"{instance.id}.log")
    [status] = [d for d in two_classes.hypervisor.list_domains(uri) if d.ivfarm_id == instance.id]
    assert status.state == "running"


def test_root_disk_is_an_overlay_on_the_image(two_classes: Cloud, base_image) -> None:  # type: ignore[no-untyped-def]
    [instance] = run(two_classes)
    uri = host_uri(two_classes, instances.find_instance_host(two_classes, instance.id))
    pool = two_classes.hypervisor.connection(uri).storagePoolLookupByName(f"{two_classes.cloud_id}-disks")
    volume = ET.fromstring(pool.storageVolLookupByName(f"{instance.id}-root.qcow2").XMLDesc(0))
    assert volume.findtext("backingStore/path") == base_image.path
    assert volume.find("target/format").get("type") == "qcow2"


def test_capacity_is_accounted_and_a_full_cloud_fails_cleanly(two_classes: Cloud) -> None:
    run(two_classes, count=4)  # 4 x 1 vCPU fills both 2-vCPU workers
    with pytest.raises(NoValidHost):
        run(two_classes)
    with two_classes.store.read() as session:
        assert session.query(Instance).count() == 4
    assert sum(h.used_cpus for h in hosts.list_hosts(two_classes)) == 4


def test_stop_start_reboot_terminate(two_classes: Cloud) -> None:
    [instance] = run(two_classes)
    uri = host_uri(two_classes, instances.find_instance_host(two_classes, instance.id))
    name = domain_name(instance.id)
    instances.stop(two_classes, instance.id)
    assert two_classes.hypervisor.status(uri, name).state == "stopped"
    with pytest.raises(InvalidState):
        instances.reboot(two_classes, instance.id)
    instances.start(two_classes, instance.id)
    assert two_classes.hypervisor.status(uri, name).state == "running"
    instances.reboot(two_classes, instance.id)
    provisioning.terminate(two_classes, instance.id)
    assert two_classes.hypervisor.status(uri, name) is None
    assert not two_classes.storage("worker").exists(uri, f"{instance.id}-root.qcow2")
    assert two_classes.seeds.list_names(uri) == [] and two_classes.consoles.list_names(uri) == []
    with two_classes.store.read() as session:
        assert session.get(Instance, instance.id).state == "terminated"
    with pytest.raises(InvalidState):
        instances.start(two_classes, instance.id)


def test_stopped_instances_free_cpu_but_keep_disk(two_classes: Cloud) -> None:
    [instance] = run(two_classes, host_class="service", flavor="m1.medium")
    instances.stop(two_classes, instance.id)
    view = hosts.show_host(two_classes, "svc1")
    assert (view.used_cpus, view.used_memory_mb) == (0, 0) and view.used_disk_gb == 21


def test_a_failed_provisioning_is_rolled_back(two_classes: Cloud) -> None:
    seeds = two_classes.seeds.directory
    shutil.rmtree(seeds)
    seeds.write_text("not a directory")  # the host's seed directory is broken
    [instance] = instances.launch(two_classes, LaunchRequest(image="base", flavor="m1.small"))
    with pytest.raises(IvfarmError):
        provisioning.provision(two_classes, instance.id)
    with two_classes.store.read() as session:
        row = session.get(Instance, instance.id)
        assert row.state == "terminated" and row.state_reason.startswith("Server.InternalError")
        uri = row.host.uri
    assert two_classes.storage("worker").list_names(uri) == []
    assert [d for d in two_classes.hypervisor.list_domains(uri) if d.ivfarm_id] == []
    assert hosts.show_host(two_classes, row.host.name).used_cpus == 0


@pytest.mark.parametrize("kwargs,error", [
    ({"image": "nope"}, NotFound),
    ({"flavor": "m9.huge"}, NotFound),
    ({"host_class": "gpu"}, InvalidInput),
    ({"count": 0}, InvalidInput),
    ({"public_nic": True}, InvalidInput),
])
def test_bad_requests_create_nothing(two_classes: Cloud, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        instances.launch(two_classes, LaunchRequest(**{"image": "base", "flavor": "m1.small", **kwargs}))
    with two_classes.store.read() as session:
        assert session.query(Instance).count() == 0


def test_concurrent_provisioning_on_a_fresh_host(cloud: Cloud, fake_host: Callable[..., str], base_image) -> None:  # type: ignore[no-untyped-def]
    """The first VMs of a host make its storage pools and farm segment at once: none may fail for that."""
    from concurrent.futures import ThreadPoolExecutor

    from ivfarm.services.farms.lifecycle import FarmRequest, create_farm

    hosts.add_host(cloud, "fresh", fake_host("fresh", cpus=64, memory_mb=65536), "worker")
    farm = create_farm(cloud, FarmRequest(name="burst", quotas={"instances": 24, "vcpus": 24}))
    launched = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.tiny", farm_id=farm.id, count=24))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: provisioning.provision(cloud, i.id), launched))
    with cloud.store.read() as session:
        assert {session.get(Instance, i.id).state for i in launched} == {"running"}
