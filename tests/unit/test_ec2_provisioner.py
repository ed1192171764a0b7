"""The background pool: provisioning, stop and termination per instance, in order, on the test driver."""
from __future__ import annotations

from collections.abc import Callable

from ivfarm.cloud import Cloud
from ivfarm.ec2.provisioner import Provisioner
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.hosts import add_host
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.store.models import Image, Instance
from tests.support.polling import poll_until


def states(cloud: Cloud, ids: list[str]) -> list[str]:
    with cloud.store.read() as session:
        return [session.get(Instance, i).state for i in ids]  # type: ignore[union-attr]


def wait(condition: Callable[[], bool]) -> None:
    poll_until(condition, 30, 0.02, "timed out")


def test_pool_builds_stops_and_tears_down(cloud: Cloud, fake_host: Callable[..., str], base_image: Image) -> None:
    uri = fake_host("w1", cpus=32, memory_mb=32768)
    add_host(cloud, "w1", uri, "worker")
    farm = create_farm(cloud, FarmRequest(name="alpha", quotas={"instances": 10}))
    ids = [i.id for i in instances.launch(cloud, instances.LaunchRequest(
        image=base_image.id, flavor="m1.tiny", farm_id=farm.id, count=6))]
    pool = Provisioner(cloud, 1)
    try:
        pool.provision(ids)
        for instance_id in ids[3:]:  # queued behind the others, or being built: either way torn down
            provisioning.begin_terminate(cloud, instance_id)
        pool.terminate(ids[3:])
        wait(lambda: states(cloud, ids) == ["running"] * 3 + ["terminated"] * 3)
        for instance_id in ids[3:]:
            assert cloud.hypervisor.status(uri, instances.domain_name(instance_id)) is None
        assert cloud.hypervisor.status(uri, instances.domain_name(ids[0])).state == "running"  # type: ignore[union-attr]

        instances.begin_stop(cloud, ids[0])
        assert states(cloud, ids[:1]) == ["stopping"]
        pool.stop(ids[:1], force=True)
        wait(lambda: states(cloud, ids[:1]) == ["stopped"])
        assert cloud.hypervisor.status(uri, instances.domain_name(ids[0])).state == "stopped"  # type: ignore[union-attr]
    finally:
        assert pool.shutdown() == 0
    assert pool.pending_jobs() == 0


def test_shutdown_leaves_queued_jobs_for_reconcile(cloud: Cloud, fake_host: Callable[..., str],
                                                   base_image: Image) -> None:
    add_host(cloud, "w1", fake_host("w1", cpus=64, memory_mb=65536), "worker")
    farm = create_farm(cloud, FarmRequest(name="alpha", quotas={"instances": 40, "vcpus": 40}))
    ids = [i.id for i in instances.launch(cloud, instances.LaunchRequest(
        image=base_image.id, flavor="m1.tiny", farm_id=farm.id, count=30))]
    pool = Provisioner(cloud, 1)
    pool.provision(ids)
    dropped = pool.shutdown()
    final = states(cloud, ids)
    assert final.count("pending") == dropped and final.count("running") == len(ids) - dropped
