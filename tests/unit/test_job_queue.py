"""The queue is the store: claims, takeover, fair order, limits, coalesced router syncs (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.hosts import add_host
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store import jobs
from ivfarm.store.jobs import Limits
from ivfarm.store.models import Image, Instance, Job
from tests.support.polling import poll_until

WIDE = Limits(per_host=1000, per_farm=1000)
LAPSE = dt.timedelta(seconds=60)


def queue(cloud: Cloud, kind: str, count: int = 1, farm_id: int | None = None, host_id: int | None = None) -> list[int]:
    with cloud.store.write() as session:
        for _ in range(count):
            jobs.enqueue(session, kind, farm_id=farm_id, host_id=host_id)
    with cloud.store.read() as session:
        return list(session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)))[-count:]


def claim_all(cloud: Cloud, worker: str, limits: Limits = WIDE) -> list[jobs.Claimed]:
    taken = []
    while (job := jobs.claim(cloud.store, worker, limits, LAPSE)) is not None:
        taken.append(job)
    return taken


def test_two_workers_never_get_the_same_job(db_cloud: Cloud) -> None:
    ids = queue(db_cloud, "stop", 60)
    got: dict[str, list[int]] = {}

    def work(name: str) -> None:
        got[name] = [job.id for job in claim_all(db_cloud, name)]

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = got["w0"] + got["w1"]
    assert sorted(taken) == ids and len(set(taken)) == len(ids)


def test_a_job_whose_heartbeat_lapsed_is_taken_over_once(db_cloud: Cloud) -> None:
    [job_id] = queue(db_cloud, "stop")
    first = jobs.claim(db_cloud.store, "dead:1", WIDE, LAPSE)
    assert first is not None and first.id == job_id
    assert jobs.claim(db_cloud.store, "alive:2", WIDE, LAPSE) is None  # fresh heartbeat: still its
    taken = jobs.claim(db_cloud.store, "alive:2", WIDE, dt.timedelta(0))  # lapsed
    assert taken is not None and taken.id == job_id
    assert jobs.claim(db_cloud.store, "alive:3", WIDE, LAPSE) is None  # the new claim is fresh: no third owner
    assert jobs.finish(db_cloud.store, job_id, "dead:1") is False  # the old worker cannot finish it
    assert jobs.finish(db_cloud.store, job_id, "alive:2") is True
    with db_cloud.store.read() as session:
        row = session.get(Job, job_id)
        assert row is not None and (row.state, row.worker, row.attempts) == ("done", "alive:2", 2)


def test_farms_take_turns_and_stops_go_first(db_cloud: Cloud) -> None:
    busy = queue(db_cloud, "provision", 20, farm_id=1)
    [single] = queue(db_cloud, "provision", 1, farm_id=2)
    [stop] = queue(db_cloud, "stop", 1, farm_id=1)
    order = [job.id for job in claim_all(db_cloud, "w:1")]
    assert order[0] == stop  # stops never wait behind launches
    assert order.index(single) <= 2  # farm 2's one launch does not wait for farm 1's twenty
    assert sorted(order) == sorted(busy + [single, stop])


def test_limits_per_host_and_per_farm(db_cloud: Cloud) -> None:
    queue(db_cloud, "provision", 3, farm_id=1, host_id=1)
    queue(db_cloud, "provision", 3, farm_id=2, host_id=2)
    per_host = claim_all(db_cloud, "w:1", Limits(per_host=1, per_farm=1000))
    assert sorted(job.farm_id or 0 for job in per_host) == [1, 2]  # one a host; the rest wait
    for job in per_host:
        assert jobs.finish(db_cloud.store, job.id, "w:1")
    per_farm = claim_all(db_cloud, "w:1", Limits(per_host=1000, per_farm=2))
    assert Counter(job.farm_id for job in per_farm) == {1: 2, 2: 2}


def test_router_syncs_of_a_batch_are_coalesced(db_cloud: Cloud) -> None:
    queue(db_cloud, jobs.ROUTER_SYNC, 5, farm_id=7)
    queue(db_cloud, jobs.ROUTER_SYNC, 2, farm_id=8)
    assert sorted(job.farm_id or 0 for job in claim_all(db_cloud, "w:1")) == [7, 8]


def states(cloud: Cloud, ids: list[str]) -> list[str]:
    with cloud.store.read() as session:
        return [session.get(Instance, i).state for i in ids]  # type: ignore[union-attr]


def test_the_provisioner_builds_stops_and_tears_down_from_the_queue(
        db_cloud: Cloud, fake_host: Callable[..., str], raw_disk: object) -> None:
    uri = fake_host("w1", cpus=32, memory_mb=32768)
    add_host(db_cloud, "w1", uri, "worker")
    image: Image = add_image(db_cloud, "base", raw_disk, public=True)  # type: ignore[arg-type]
    farm = create_farm(db_cloud, FarmRequest(name="alpha", quotas={"instances": 10}))
    ids = [i.id for i in instances.launch(db_cloud, instances.LaunchRequest(
        image=image.id, flavor="m1.tiny", farm_id=farm.id, count=4))]
    assert states(db_cloud, ids) == ["pending"] * 4 and jobs.outstanding(db_cloud.store, ids) == 4
    worker = Provisioner(db_cloud, 1)
    worker.run_until(lambda: jobs.outstanding(db_cloud.store) == 0)
    assert states(db_cloud, ids) == ["running"] * 4

    instances.begin_stop(db_cloud, ids[0], force=True)
    for instance_id in ids[1:]:
        assert provisioning.begin_terminate(db_cloud, instance_id, queue=True) == "running"
    worker.run_until(lambda: jobs.outstanding(db_cloud.store) == 0)
    assert states(db_cloud, ids) == ["stopped"] + ["terminated"] * 3
    assert cloud_domain(db_cloud, uri, ids[1]) is None

    instances.begin_start(db_cloud, ids[0], queue=True)
    assert states(db_cloud, ids[:1]) == ["pending"]
    worker.run_until(lambda: jobs.outstanding(db_cloud.store) == 0)
    instances.begin_reboot(db_cloud, ids[0], queue=True)
    assert states(db_cloud, ids[:1]) == ["rebooting"]
    worker.run_until(lambda: jobs.outstanding(db_cloud.store) == 0)
    assert states(db_cloud, ids[:1]) == ["running"]
    with db_cloud.store.read() as session:
        kinds = Counter(session.scalars(select(Job.kind).where(Job.state == "done")))
    # one router sync for the batch of three terminations
    assert kinds == {"provision": 4, "stop": 1, "terminate": 3, jobs.ROUTER_SYNC: 1, "start": 1, "reboot": 1}


def cloud_domain(cloud: Cloud, uri: str, instance_id: str) -> object:
    return cloud.hypervisor.status(uri, instances.domain_name(instance_id))


@pytest.mark.postgres  # SQLite has one provisioner, polling
@pytest.mark.parametrize("db_cloud", ["postgres"], indirect=True)
def test_notify_wakes_an_idle_provisioner_on_postgresql(db_cloud: Cloud) -> None:
    worker = Provisioner(db_cloud, 1)
    worker.poll_s = 60.0  # only a NOTIFY can wake it in time
    worker.start()
    try:
        time.sleep(0.5)  # idle, waiting
        [job_id] = queue(db_cloud, "stop")
        poll_until(lambda: job_state(db_cloud, job_id) == "failed", 10, 0.05, "the NOTIFY woke nobody")
    finally:
        worker.stop()


def job_state(cloud: Cloud, job_id: int) -> str | None:
    with cloud.store.read() as session:
        row = session.get(Job, job_id)
        return row.state if row else None
