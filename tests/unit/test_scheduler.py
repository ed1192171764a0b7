"""Scheduler: class filter, enabled state, capacity, policies, all-or-nothing batches."""
from __future__ import annotations

import pytest

from ivfarm.errors import InvalidInput, NoValidHost
from ivfarm.services.compute.scheduler import HostCapacity, Request, Scheduler


def hosts() -> list[HostCapacity]:
    return [
        HostCapacity("w1", "worker", cpus=8, memory_mb=8192, disk_gb=100, used_cpus=6, used_memory_mb=6144),
        HostCapacity("w2", "worker", cpus=8, memory_mb=8192, disk_gb=100),
        HostCapacity("s1", "service", cpus=4, memory_mb=4096, disk_gb=100),
        HostCapacity("s2", "service", cpus=4, memory_mb=4096, disk_gb=100, used_cpus=1, used_memory_mb=1024),
    ]


def test_pack_fills_the_fullest_worker_that_fits() -> None:
    chosen = Scheduler({"worker": "pack"}).place([Request(1, 1024, 10, "worker")], hosts())
    assert chosen[0].name == "w1"


def test_stripe_picks_the_emptiest_service_host() -> None:
    chosen = Scheduler({"service": "stripe"}).place([Request(1, 512, 10, "service")], hosts())
    assert chosen[0].name == "s1"


def test_classes_never_mix() -> None:
    pool = hosts()
    placed = Scheduler({"worker": "pack", "service": "stripe"}).place([Request(1, 512, 1, "service")] * 6, pool)
    assert {h.name for h in placed} <= {"s1", "s2"}


def test_capacity_is_accounted_across_a_batch() -> None:
    pool = hosts()
    placed = Scheduler({"worker": "pack"}).place([Request(2, 2048, 10, "worker")] * 5, pool)
    assert [h.name for h in placed].count("w1") == 1
    assert [h.name for h in placed].count("w2") == 4
    assert pool[1].used_cpus == 8 and pool[1].used_memory_mb == 8192


def test_a_batch_that_does_not_fit_places_nothing() -> None:
    pool = hosts()
    with pytest.raises(NoValidHost, match="no enabled worker host has room"):
        Scheduler({"worker": "pack"}).place([Request(2, 2048, 10, "worker")] * 6, pool)
    assert (pool[0].used_cpus, pool[1].used_cpus) == (6, 0)


def test_disabled_hosts_and_disk_are_respected() -> None:
    pool = hosts()
    pool[1].enabled = False
    with pytest.raises(NoValidHost):
        Scheduler({"worker": "pack"}).place([Request(4, 1024, 10, "worker")], pool)
    with pytest.raises(NoValidHost):
        Scheduler({"service": "pack"}).place([Request(1, 512, 101, "service")], pool)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(InvalidInput):
        Scheduler({"worker": "random"})
