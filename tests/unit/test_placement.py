"""Re-placing instances (migrate, drain) and public NICs, on libvirt's test driver."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidInput, InvalidState, NoValidHost
from ivfarm.services.compute import hosts, instances, migration, provisioning
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.compute.placement import place_on, reserve
from ivfarm.store.models import Instance


@pytest.fixture
def spread_cloud(cloud: Cloud, fake_host: Callable[..., str], base_image) -> Cloud:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "wn1", fake_host("wn1", cpus=2, memory_mb=2048), "worker")
    hosts.add_host(cloud, "wn2", fake_host("wn2", cpus=2, memory_mb=2048), "worker")
    hosts.add_host(cloud, "wn3", fake_host("wn3", cpus=1, memory_mb=256), "worker")  # too small for m1.small
    hosts.add_host(cloud, "svc1", fake_host("svc1"), "service")
    return cloud


def launch(cloud: Cloud, **kwargs) -> str:  # type: ignore[no-untyped-def]
    [instance] = instances.launch(cloud, LaunchRequest(**{"image": "base", "flavor": "m1.small", **kwargs}))
    return instance.id


def host_of(cloud: Cloud, instance_id: str) -> str:
    with cloud.store.read() as session:
        return session.get(Instance, instance_id).host.name


def test_the_scheduler_picks_another_host_and_holds_its_capacity(spread_cloud: Cloud) -> None:
    vm = launch(spread_cloud)
    source = host_of(spread_cloud, vm)
    move = reserve(spread_cloud, vm, None, ("pending",))
    assert move.source == source and move.target != source and host_of(spread_cloud, vm) == move.target
    with spread_cloud.store.read() as session:
        memory = session.get(Instance, vm).memory_mb
    used = {h.name: h.used_memory_mb for h in hosts.list_hosts(spread_cloud)}
    assert used[move.target] == memory and used[source] == 0
    place_on(spread_cloud, vm, source)
    assert host_of(spread_cloud, vm) == source


@pytest.mark.parametrize("to,error,match", [
    ("svc1", InvalidInput, "is a service host"),
    ("wn3", NoValidHost, "no room"),
    ("nowhere", Exception, "not found"),
])
def test_a_named_target_is_checked(spread_cloud: Cloud, to: str, error: type, match: str) -> None:
    vm = launch(spread_cloud)
    with pytest.raises(error, match=match):
        reserve(spread_cloud, vm, to, ("pending",))


def test_disabled_targets_own_host_and_states_are_refused(spread_cloud: Cloud) -> None:
    vm = launch(spread_cloud)
    source = host_of(spread_cloud, vm)
    with pytest.raises(InvalidInput, match="already runs on"):
        reserve(spread_cloud, vm, source, ("pending",))
    other = "wn2" if source == "wn1" else "wn1"
    hosts.set_enabled(spread_cloud, other, False)
    with pytest.raises(InvalidState, match="disabled"):
        reserve(spread_cloud, vm, other, ("pending",))
    with pytest.raises(InvalidState, match="pending; this needs it running or stopped"):
        migration.migrate(spread_cloud, vm)


def test_drain_disables_the_host_and_reports_what_it_could_not_move(spread_cloud: Cloud) -> None:
    vm = launch(spread_cloud)  # still pending: busy, not moved
    source = host_of(spread_cloud, vm)
    report = migration.drain(spread_cloud, source)
    assert not hosts.show_host(spread_cloud, source).enabled
    assert report.moved == [] and list(report.skipped) == [vm] and "run drain again" in report.skipped[vm]


def test_service_vms_get_a_public_nic_only_on_a_host_bridge(cloud_factory: Callable[..., Cloud],
                                                            fake_host: Callable[..., str], raw_disk) -> None:  # type: ignore[no-untyped-def]
    from ivfarm.services.images.catalog import add_image

    namespaced = cloud_factory()  # the default public segment lives in a network namespace
    add_image(namespaced, "base", raw_disk, public=True)
    hosts.add_host(namespaced, "svc", fake_host("svc-a"), "service")
    with pytest.raises(InvalidInput, match="lives in network namespace ivfarm-public"):
        instances.launch(namespaced, LaunchRequest(image="base", flavor="m1.small", host_class="service", public_nic=True))

    site = cloud_factory(network={"public": {"netns": None, "bridge": "br-public"}})
    add_image(site, "base", raw_disk, public=True)
    hosts.add_host(site, "svc", fake_host("svc-b"), "service")
    vm = launch(site, host_class="service", public_nic=True)
    provisioning.provision(site, vm)
    uri = hosts.show_host(site, "svc").uri
    [nic] = ET.fromstring(site.hypervisor.domain_xml(uri, domain_name(vm))).findall("devices/interface")
    assert nic.find("source").get("bridge") == "br-public"
    assert nic.find("mac").get("address") == "02:01:" + ":".join(vm[-8:][i:i + 2] for i in range(0, 8, 2))
    with pytest.raises(InvalidInput, match="only service-class"):
        instances.launch(site, LaunchRequest(image="base", flavor="m1.small", public_nic=True))
