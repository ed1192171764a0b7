"""Quotas on SQLite and PostgreSQL: limits, usage, MinCount/MaxCount, start, addresses, concurrency."""
from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import QuotaExceeded
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import elastic_ips, lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.images.catalog import add_image
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import Farm


@pytest.fixture
def farm_cloud(db_cloud: Cloud, fake_host: Callable[..., str], raw_disk) -> tuple[Cloud, Farm]:  # type: ignore[no-untyped-def]
    hosts.add_host(db_cloud, "w", fake_host("w", cpus=64, memory_mb=65536), "worker")
    add_image(db_cloud, "base", raw_disk, public=True)
    farm = lifecycle.create_farm(db_cloud, FarmRequest(name="lab", quotas={"instances": 3, "vcpus": 4, "memory_mb": 4096}))
    return db_cloud, farm


def usage(cloud: Cloud, farm: Farm) -> quotas.Usage:
    with cloud.store.read() as session:
        return quotas.usage(session, farm.id)


def test_report_shows_limit_and_usage(farm_cloud) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = farm_cloud
    instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    with cloud.store.read() as session:
        rows = {r["resource"]: r for r in quotas.report(session, session.get(Farm, farm.id))}
    assert rows["instances"] == {"resource": "instances", "limit": 3, "used": 1, "free": 2}
    assert rows["memory_mb"]["used"] == 512 and rows["addresses"]["used"] == 1


def test_max_count_is_trimmed_and_min_count_enforced(farm_cloud) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = farm_cloud
    launched = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, count=5, min_count=1))
    assert len(launched) == 3  # as EC2: MaxCount beyond the quota launches what fits
    with pytest.raises(QuotaExceeded, match="instances: limit 3, in use 3"):
        instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    assert usage(cloud, farm).instances == 3


def test_the_binding_resource_is_named(farm_cloud) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = farm_cloud
    with pytest.raises(QuotaExceeded, match="memory_mb"):
        instances.launch(cloud, LaunchRequest(image="base", flavor="m1.large", farm_id=farm.id))
    assert usage(cloud, farm).instances == 0


def test_stopped_instances_release_cpu_and_start_is_checked(farm_cloud) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = farm_cloud
    [first] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.medium", farm_id=farm.id))
    provisioning.provision(cloud, first.id)
    instances.stop(cloud, first.id)
    assert (usage(cloud, farm).vcpus, usage(cloud, farm).disk_gb) == (0, first.disk_gb)
    [second] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.medium", farm_id=farm.id))
    provisioning.provision(cloud, second.id)
    instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    with pytest.raises(QuotaExceeded, match="vcpus"):
        instances.start(cloud, first.id)
    provisioning.terminate(cloud, second.id)
    instances.start(cloud, first.id)
    assert usage(cloud, farm).vcpus == 3


def test_addresses_quota(farm_cloud) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = farm_cloud
    with pytest.raises(QuotaExceeded, match="addresses"):
        elastic_ips.allocate(cloud, farm.id)
    with cloud.store.read() as session:
        reserved = elastic_ips.farm_addresses(session, session.get(Farm, farm.id))[0]
    elastic_ips.release(cloud, farm.id, public_ip=reserved.public_ip)
    assert usage(cloud, farm).addresses == 0
    again = elastic_ips.allocate(cloud, farm.id)
    assert again.public_ip == reserved.public_ip  # the farm's reserved address comes back
    assert usage(cloud, farm).addresses == 1


def test_concurrent_launches_never_pass_the_last_slot(farm_cloud) -> None:  # type: ignore[no-untyped-def]
    cloud, farm = farm_cloud
    with cloud.store.write() as session:
        quotas.set_limits(session.get(Farm, farm.id), {"instances": 10, "vcpus": 100, "memory_mb": 100000})
    outcomes: list[str] = []
    barrier = threading.Barrier(30)

    def attempt() -> None:
        barrier.wait()
        try:
            instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("quota")

    threads = [threading.Thread(target=attempt) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 10 and outcomes.count("quota") == 20
    assert usage(cloud, farm).instances == 10
