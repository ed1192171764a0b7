"""Resizing a stopped instance: quota and room checked in one transaction, a move queued when its host
lacks room, the domain made again with the new size at its next start (test driver)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidState, NoValidHost, QuotaExceeded
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instance_attributes import MIGRATE, AttributeChange, modify
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.store.models import Farm, Host, Instance, Job


def stopped_vm(cloud: Cloud, farm: Farm) -> str:
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.tiny", farm_id=farm.id))
    provisioning.provision(cloud, instance.id)
    instances.stop(cloud, instance.id)
    return instance.id


def row(cloud: Cloud, instance_id: str) -> tuple[str, int, int, str]:
    with cloud.store.read() as session:
        found = session.get(Instance, instance_id)
        return found.flavor_name, found.vcpus, found.memory_mb, session.get(Host, found.host_id).name


@pytest.fixture
def small_and_big(cloud: Cloud, fake_host: Callable[..., str], base_image) -> tuple[Cloud, Farm]:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "small", fake_host("small", 1, 1024), "worker", cpu_ratio=1.0, memory_ratio=1.0)
    hosts.add_host(cloud, "big", fake_host("big", 8, 12288), "worker", cpu_ratio=1.0, memory_ratio=1.0)
    return cloud, lifecycle.create_farm(cloud, FarmRequest(name="lab", quotas={"vcpus": 4, "memory_mb": 8192}))


def test_a_resize_that_fits_its_host_is_made_at_the_next_start(small_and_big) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = small_and_big
    hosts.set_enabled(cloud, "big", False)
    vm = stopped_vm(cloud, farm)
    modify(cloud, farm.id, vm, AttributeChange(instance_type="m1.small"))
    assert row(cloud, vm) == ("m1.small", 1, 512, "small")
    provisioning.start(cloud, vm)
    uri = hosts.show_host(cloud, "small").uri
    domain = ET.fromstring(cloud.hypervisor.domain_xml(uri, domain_name(vm)))
    assert int(domain.findtext("memory") or 0) == 512 * 1024
    with cloud.store.read() as session:
        assert session.get(Instance, vm).redefine_on_start is False
    with pytest.raises(InvalidState):
        modify(cloud, farm.id, vm, AttributeChange(instance_type="m1.tiny"))


def test_a_resize_its_host_has_no_room_for_queues_a_move(small_and_big) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = small_and_big
    hosts.set_enabled(cloud, "big", False)
    vm = stopped_vm(cloud, farm)
    hosts.set_enabled(cloud, "big", True)
    modify(cloud, farm.id, vm, AttributeChange(instance_type="m1.medium"))
    assert row(cloud, vm) == ("m1.medium", 2, 2048, "small")
    with cloud.store.read() as session:
        [job] = session.query(Job).filter_by(kind=MIGRATE, instance_id=vm).all()
    assert job.state == "queued" and job.payload == {"to": "big"}


def test_a_resize_over_quota_or_beyond_every_host_changes_nothing(small_and_big) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = small_and_big
    vm = stopped_vm(cloud, farm)
    before = row(cloud, vm)
    with pytest.raises(QuotaExceeded):
        modify(cloud, farm.id, vm, AttributeChange(instance_type="m1.xlarge"))
    with cloud.store.write() as session:
        farm_row = session.get(Farm, farm.id)
        farm_row.quota_vcpus, farm_row.quota_memory_mb = 64, 1 << 20
    with pytest.raises(NoValidHost):
        modify(cloud, farm.id, vm, AttributeChange(instance_type="m1.xlarge"))  # 16 GiB: no host has that free
    assert row(cloud, vm) == before
    with cloud.store.read() as session:
        assert session.query(Job).filter_by(kind=MIGRATE).count() == 0
