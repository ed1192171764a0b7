"""A service-zone volume on the GlusterFS shared pool: made there by a job through one service host,
hot-plugged into a service VM on either host: the VM live-migrates to the other host (detached:
see docs/ec2.md on migrating with attached volumes) and gets the same volume there."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import libvirt
import pytest

from drivers.hypervisor.devices import disk_targets
from ivfarm.services.compute import instances, migration, provisioning, volumes
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store.models import Instance, Volume
from tests.integration import multihost
from tests.integration.conftest import TEST_ROOT, wait_for_console
from tests.integration.gluster import GlusterVolume, start_volume

two_hosts = multihost.two_hosts  # the fixture
pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm, pytest.mark.gluster]


@pytest.fixture
def gluster() -> Iterator[GlusterVolume]:
    tag = uuid.uuid4().hex[:6]
    started = start_volume(TEST_ROOT / f"gl-{tag}", f"ivt{tag}")
    yield started
    started.stop()


def _run_jobs(provisioner: Provisioner) -> None:
    while provisioner.run_one():
        pass


def _live_targets(uri: str, instance_id: str) -> list[str]:
    conn = libvirt.open(uri)
    try:
        return disk_targets(conn.lookupByName(domain_name(instance_id)).XMLDesc(0))
    finally:
        conn.close()


def test_service_volume_lives_on_gluster_and_follows_live_migration(gluster: GlusterVolume, two_hosts) -> None:  # type: ignore[no-untyped-def]
    cloud, _ = two_hosts("service", storage={"service": {"backend": "gluster", "gluster": {
        "volume": gluster.name, "hosts": [gluster.server], "mount": str(gluster.root / "mnt")}}})
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="glvol"))
    provisioner = Provisioner(cloud, 1)
    # the second libvirtd has no network driver: the VM runs without a farm NIC, then joins the farm
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", host_class="service"))
    provisioning.provision(cloud, vm.id)
    with cloud.store.write() as session:
        session.get_one(Instance, vm.id).farm_id = farm.id
    wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")

    made = volumes.create_volume(cloud, volumes.VolumeRequest(farm.id, "service", 1))
    assert made is not None and made.state == "creating"  # shared storage: made at once, by its job
    _run_jobs(provisioner)
    assert f"{made.id}.qcow2" in {p.name for p in gluster.brick.iterdir()}
    volumes.attach_volume(cloud, farm.id, made.id, vm.id, "/dev/sdf")
    _run_jobs(provisioner)
    with cloud.store.read() as session:
        assert session.get_one(Volume, made.id).attach_state == "attached"
        source = session.get_one(Instance, vm.id).host
        assert source is not None
        source_uri = source.uri
    assert "vdf" in _live_targets(source_uri, vm.id)
    volumes.detach_volume(cloud, farm.id, made.id)
    _run_jobs(provisioner)
    assert "vdf" not in _live_targets(source_uri, vm.id)

    migration.migrate(cloud, vm.id)
    with cloud.store.read() as session:
        target = session.get_one(Instance, vm.id).host
        assert target is not None and target.uri != source_uri
        target_uri = target.uri
    volumes.attach_volume(cloud, farm.id, made.id, vm.id, "/dev/sdf")  # the other host reaches it too
    _run_jobs(provisioner)
    with cloud.store.read() as session:
        assert session.get_one(Volume, made.id).attach_state == "attached"
    assert "vdf" in _live_targets(target_uri, vm.id)
    volumes.detach_volume(cloud, farm.id, made.id)
    _run_jobs(provisioner)
    with cloud.store.read() as session:
        assert session.get_one(Volume, made.id).state == "available"
