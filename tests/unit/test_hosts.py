"""Host registry on libvirt's test driver."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import AlreadyExists, HostUnreachable, InUse, InvalidInput, NotFound
from ivfarm.services.compute import hosts


def test_capacity_is_read_from_libvirt(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    host = hosts.add_host(cloud, "wn-01", fake_host("a", cpus=12, memory_mb=24576), "worker")
    assert (host.cpus, host.memory_mb) == (12, 24576)
    view = hosts.show_host(cloud, "wn-01")
    assert view.schedulable_cpus == 12 and view.enabled and view.status == "up"


def test_given_capacity_and_ratios_override(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    hosts.add_host(cloud, "svc-01", fake_host("b"), "service", cpus=4, memory_mb=4096, cpu_ratio=4.0, memory_ratio=1.5)
    view = hosts.show_host(cloud, "svc-01")
    assert (view.schedulable_cpus, view.schedulable_memory_mb) == (16, 6144)


def test_config_ratio_applies_when_host_has_none(cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str]) -> None:
    custom = cloud_factory(hypervisor={"cpu_allocation_ratio": 2.0})
    hosts.add_host(custom, "w", fake_host("c", cpus=8), "worker")
    assert hosts.show_host(custom, "w").schedulable_cpus == 16


def test_unreachable_uri_is_refused_and_not_recorded(cloud: Cloud, tmp_path) -> None:
    with pytest.raises(HostUnreachable, match="cannot connect"):
        hosts.add_host(cloud, "ghost", f"test://{tmp_path}/missing.xml", "worker")
    assert hosts.list_hosts(cloud) == []


@pytest.mark.parametrize("kwargs,error", [
    ({"host_class": "gpu"}, InvalidInput),
    ({"name": "bad name!"}, InvalidInput),
    ({"cpus": 0}, InvalidInput),
    ({"cpu_ratio": -1.0}, InvalidInput),
])
def test_bad_input(cloud: Cloud, fake_host: Callable[..., str], kwargs: dict, error: type) -> None:
    args = {"name": "h", "uri": fake_host("d"), "host_class": "worker", **kwargs}
    with pytest.raises(error):
        hosts.add_host(cloud, **args)


def test_duplicates_enable_disable_remove(cloud: Cloud, fake_host: Callable[..., str]) -> None:
    uri = fake_host("e")
    hosts.add_host(cloud, "h1", uri, "worker")
    with pytest.raises(AlreadyExists):
        hosts.add_host(cloud, "h1", fake_host("f"), "worker")
    with pytest.raises(AlreadyExists):
        hosts.add_host(cloud, "h2", uri, "worker")
    hosts.set_enabled(cloud, "h1", False)
    assert not hosts.show_host(cloud, "h1").enabled
    hosts.set_enabled(cloud, "h1", True)
    hosts.remove_host(cloud, "h1")
    with pytest.raises(NotFound):
        hosts.show_host(cloud, "h1")


def test_remove_refuses_a_host_with_instances(cloud: Cloud, fake_host, base_image) -> None:
    from ivfarm.services.compute import instances, provisioning

    hosts.add_host(cloud, "h1", fake_host("g"), "worker")
    [instance] = instances.launch(cloud, instances.LaunchRequest(image=base_image.id, flavor="m1.small"))
    provisioning.provision(cloud, instance.id)
    with pytest.raises(InUse, match="1 instance"):
        hosts.remove_host(cloud, "h1")
    provisioning.terminate(cloud, instance.id)
    hosts.remove_host(cloud, "h1")
