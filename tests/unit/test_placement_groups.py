"""Spread placement groups: distinct hosts in a batch, at launch, when re-placed; deletion rules."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, NotFound, NoValidHost
from ivfarm.services.compute import hosts, instances, placement_groups
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.compute.placement import reserve
from ivfarm.services.compute.scheduler import HostCapacity, Request, Scheduler
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.store.models import Farm, Instance, PlacementGroup


def _pool() -> list[HostCapacity]:
    return [HostCapacity("w1", "worker", cpus=8, memory_mb=8192, disk_gb=100, used_cpus=2, used_memory_mb=2048),
            HostCapacity("w2", "worker", cpus=8, memory_mb=8192, disk_gb=100)]


def test_a_distinct_batch_takes_one_host_each_or_nothing() -> None:
    scheduler = Scheduler({"worker": "pack"})
    assert [h.name for h in scheduler.place([Request(1, 512, 1, "worker")] * 2, _pool())] == ["w1", "w1"]
    assert sorted(h.name for h in scheduler.place([Request(1, 512, 1, "worker")] * 2, _pool(),
                                                  distinct=True)) == ["w1", "w2"]
    pool = _pool()
    with pytest.raises(NoValidHost, match="free of the others"):
        scheduler.place([Request(1, 512, 1, "worker")] * 3, pool, distinct=True)
    assert [h.used_cpus for h in pool] == [2, 0]


@pytest.fixture
def farm(cloud: Cloud, fake_host: Callable[..., str], base_image: Any) -> Farm:
    for name in ("wn1", "wn2", "wn3"):
        hosts.add_host(cloud, name, fake_host(name), "worker")
    return lifecycle.create_farm(cloud, FarmRequest(name="lab"))


def _host_of(cloud: Cloud, instance_id: str) -> str:
    with cloud.store.read() as session:
        return session.get(Instance, instance_id).host.name


def _launch(cloud: Cloud, farm: Farm, count: int, group: str | None = "web") -> list[str]:
    launched = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id, count=count,
                                                     placement_group=group))
    return [i.id for i in launched]


def test_launch_and_re_placement_keep_members_apart(cloud: Cloud, farm: Farm) -> None:
    group = placement_groups.create(cloud, farm.id, "web", "spread")
    first, second = _launch(cloud, farm, 2)
    assert _host_of(cloud, first) != _host_of(cloud, second)
    with pytest.raises(NoValidHost):
        reserve(cloud, first, _host_of(cloud, second), ("pending",))
    third = next(n for n in ("wn1", "wn2", "wn3") if n not in {_host_of(cloud, first), _host_of(cloud, second)})
    move = reserve(cloud, first, None, ("pending",))
    assert move.target == third  # the only host holding no other member
    with pytest.raises(NoValidHost):
        _launch(cloud, farm, 2)  # only the host first left holds no member
    (fourth,) = _launch(cloud, farm, 1)
    assert len({_host_of(cloud, i) for i in (first, second, fourth)}) == 3
    with pytest.raises(InUse):
        placement_groups.delete(cloud, farm.id, "web")
    with pytest.raises(AlreadyExists):
        placement_groups.create(cloud, farm.id, "web", "spread")
    with pytest.raises(InvalidInput):
        placement_groups.create(cloud, farm.id, "tight", "cluster")
    with pytest.raises(NotFound):
        _launch(cloud, farm, 1, group="absent")
    lifecycle.delete_farm(cloud, "lab")
    with cloud.store.read() as session:
        assert session.scalar(select(PlacementGroup.id).where(PlacementGroup.id == group.id)) is None
