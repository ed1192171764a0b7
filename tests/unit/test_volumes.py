"""Volumes on libvirt's test driver in this process: the disks in the host's pool, attachments in the
domain's definition (the test driver has no hot-plug), jobs run by a provisioner, and reconcile's
repairs of volumes and snapshots left in flight."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from ivfarm.cloud import Cloud
from ivfarm.errors import InUse, InvalidInput, InvalidState, QuotaExceeded
from ivfarm.services.compute import hosts, instances, migration, provisioning, volume_records, volumes
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs import accounting, reconcile
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store.models import Farm, Job, Snapshot, Volume


@pytest.fixture
def world(cloud: Cloud, fake_host: Callable[..., str], base_image: Any) -> tuple[Cloud, str, Farm, str]:
    """A farm with one running instance on worker host w."""
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    provisioning.provision(cloud, instance.id)
    return cloud, hosts.list_hosts(cloud)[0].uri, farm, instance.id


def run_jobs(cloud: Cloud) -> None:
    provisioner = Provisioner(cloud, 1)
    while provisioner.run_one():
        pass


def volume(cloud: Cloud, volume_id: str) -> Volume:
    with cloud.store.read() as session:
        row = session.get_one(Volume, volume_id)
        session.expunge(row)
        return row


def targets(cloud: Cloud, uri: str, instance_id: str) -> list[str]:
    return cloud.hypervisor.disk_targets(uri, domain_name(instance_id))


def test_attach_records_the_disk_in_the_domain_and_detach_removes_it(world: Any) -> None:
    cloud, uri, farm, instance_id = world
    made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 2))
    assert made is not None and made.state == "available" and not made.made  # nothing to make until attached
    volumes.attach_volume(cloud, farm.id, made.id, instance_id, "/dev/sdf")
    assert volume(cloud, made.id).attach_state == "attaching"
    run_jobs(cloud)
    attached = volume(cloud, made.id)
    assert (attached.state, attached.attach_state, attached.made) == ("in-use", "attached", True)
    assert "vdf" in targets(cloud, uri, instance_id)
    assert cloud.storage("worker").exists(uri, volume_records.disk_name(made.id))
    with pytest.raises(InUse):
        volumes.delete_volume(cloud, farm.id, made.id)
    volumes.detach_volume(cloud, farm.id, made.id)
    run_jobs(cloud)
    assert volume(cloud, made.id).state == "available" and "vdf" not in targets(cloud, uri, instance_id)
    volumes.delete_volume(cloud, farm.id, made.id)
    run_jobs(cloud)
    assert volume(cloud, made.id).state == "deleted"
    assert not cloud.storage("worker").exists(uri, volume_records.disk_name(made.id))


def test_snapshot_and_restore_copy_the_disk_in_the_same_pool(world: Any) -> None:
    cloud, uri, farm, instance_id = world
    made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1))
    assert made is not None
    volumes.attach_volume(cloud, farm.id, made.id, instance_id, "/dev/sdg")
    run_jobs(cloud)
    snapshot = volumes.create_snapshot(cloud, farm.id, made.id, "", {})
    assert snapshot is not None and snapshot.state == "pending"
    run_jobs(cloud)
    storage = cloud.storage("worker")
    assert storage.exists(uri, volume_records.disk_name(snapshot.id))
    restored = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 2, snapshot.id))
    assert restored is not None and restored.state == "creating"
    run_jobs(cloud)
    assert volume(cloud, restored.id).state == "available" and storage.exists(uri, volume_records.disk_name(restored.id))
    with pytest.raises(InvalidInput):  # volumes never shrink
        volumes.modify_volume(cloud, farm.id, restored.id, 1, None)


def test_terminate_honours_delete_on_termination(world: Any) -> None:
    cloud, uri, farm, instance_id = world
    kept, dropped = (volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1)) for _ in range(2))
    assert kept is not None and dropped is not None
    volumes.attach_volume(cloud, farm.id, kept.id, instance_id, "/dev/sdf")
    volumes.attach_volume(cloud, farm.id, dropped.id, instance_id, "/dev/sdg")
    run_jobs(cloud)
    with cloud.store.write() as session:
        session.get_one(Volume, dropped.id).delete_on_termination = True
    provisioning.terminate(cloud, instance_id)
    assert volume(cloud, kept.id).state == "available" and volume(cloud, dropped.id).state == "deleted"
    storage = cloud.storage("worker")
    assert storage.exists(uri, volume_records.disk_name(kept.id))
    assert not storage.exists(uri, volume_records.disk_name(dropped.id))


def test_quota_and_state_rules(world: Any) -> None:
    cloud, _, farm, instance_id = world
    with cloud.store.write() as session:
        session.get_one(Farm, farm.id).quota_volume_gb = 3
    volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 2))
    with pytest.raises(QuotaExceeded) as excinfo:
        volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 2))
    assert excinfo.value.resource == "volume_gb"
    other = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1))
    assert other is not None
    with pytest.raises(InvalidState):
        volumes.detach_volume(cloud, farm.id, other.id)
    with cloud.store.write() as session:  # as if made in the service zone
        session.get_one(Volume, other.id).host_class = "service"
    with pytest.raises(volume_records.ZoneMismatch):
        volumes.attach_volume(cloud, farm.id, other.id, instance_id, "/dev/sdf")
    assert volume(cloud, other.id).state == "available"


def _no_jobs(cloud: Cloud) -> None:
    """As after a provisioner died and its job was failed (or lost): nothing works on the rows."""
    with cloud.store.write() as session:
        session.execute(update(Job).where(Job.state.in_(("queued", "running"))).values(state="failed"))


def test_reconcile_finishes_or_rolls_back_volumes_left_in_flight(world: Any) -> None:
    cloud, uri, farm, instance_id = world
    plugged, unplugged, creating = (volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1))
                                    for _ in range(3))
    assert plugged is not None and unplugged is not None and creating is not None
    volumes.attach_volume(cloud, farm.id, plugged.id, instance_id, "/dev/sdf")
    run_jobs(cloud)
    snapshot = volumes.create_snapshot(cloud, farm.id, plugged.id, "", {})  # its copy never ran
    volumes.detach_volume(cloud, farm.id, plugged.id)  # the detach job never ran: still plugged
    volumes.attach_volume(cloud, farm.id, unplugged.id, instance_id, "/dev/sdg")  # the attach never ran
    with cloud.store.write() as session:  # a create whose job was lost
        session.execute(update(Volume).where(Volume.id == creating.id).values(state="creating", host_id=None))
    _no_jobs(cloud)
    assert snapshot is not None
    report = reconcile.reconcile(cloud)
    assert report.errors == []
    assert {(f.kind, f.target) for f in report.findings} >= {
        ("volume", plugged.id), ("volume", unplugged.id), ("volume", creating.id), ("snapshot", snapshot.id)}
    assert (volume(cloud, plugged.id).state, volume(cloud, plugged.id).attach_state) == ("in-use", "attached")
    assert (volume(cloud, unplugged.id).state, volume(cloud, unplugged.id).attach_state) == ("available", None)
    assert volume(cloud, creating.id).state == "error"
    with cloud.store.read() as session:
        assert session.get_one(Snapshot, snapshot.id).state == "error"
    assert reconcile.reconcile(cloud).findings == []  # idempotent


def test_accounting_counts_volume_gb_hours(world: Any) -> None:
    cloud, _, farm, _ = world
    made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 4))
    assert made is not None
    start = volume(cloud, made.id).created_at
    accounting.collect(cloud, now=start + dt.timedelta(hours=2))
    volumes.delete_volume(cloud, farm.id, made.id)  # never made: deleted at once
    with cloud.store.write() as session:
        session.get_one(Volume, made.id).deleted_at = start + dt.timedelta(hours=3)
    accounting.collect(cloud, now=start + dt.timedelta(hours=5))
    (line,) = accounting.report(cloud, farm="lab")
    assert line.volume_gb_hours == pytest.approx(12.0)  # 4 GB for 3 hours, nothing after its deletion


def test_an_instance_with_volumes_attached_is_not_migrated(world: Any, fake_host: Callable[..., str]) -> None:
    cloud, _, farm, instance_id = world
    hosts.add_host(cloud, "w2", fake_host("w2"), "worker")
    made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1))
    assert made is not None
    volumes.attach_volume(cloud, farm.id, made.id, instance_id, "/dev/sdf")
    run_jobs(cloud)
    with pytest.raises(InvalidState, match="detach them"):
        migration.migrate(cloud, instance_id, "w2")
    assert instances.find_instance_host(cloud, instance_id) == "w"


def test_a_recreated_worker_instance_leaves_its_volumes_on_the_failed_host(
        cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str], raw_disk: Path) -> None:
    cloud = cloud_factory(hosts={"fence_command": "true", "worker_failure_policy": "recreate"})
    dead = fake_host("wn1")
    hosts.add_host(cloud, "wn1", dead, "worker")
    add_image(cloud, "base", raw_disk, public=True)
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    [vm] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    provisioning.provision(cloud, vm.id)
    hosts.add_host(cloud, "wn2", fake_host("wn2"), "worker")
    made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "worker", 1))
    assert made is not None
    volumes.attach_volume(cloud, farm.id, made.id, vm.id, "/dev/sdf")
    run_jobs(cloud)
    home = volume(cloud, made.id).host_id
    Path(dead.removeprefix("test://")).unlink()  # wn1 dies
    cloud.hypervisor.forget(dead)
    check_hosts(cloud, grace_s=60)
    check_hosts(cloud, grace_s=0)  # fenced: the instance is built again on wn2
    assert instances.find_instance_host(cloud, vm.id) == "wn2"
    left = volume(cloud, made.id)
    assert (left.state, left.instance_id, left.host_id) == ("available", None, home)
    with pytest.raises(InvalidState):  # its disk is in wn1's pool
        volumes.attach_volume(cloud, farm.id, made.id, vm.id, "/dev/sdf")
