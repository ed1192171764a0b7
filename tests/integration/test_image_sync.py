"""Image caches filled in waves over SSH: 8 loopback sshd targets, corruption found and replaced."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.storage.base import disk_names
from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.images.catalog import add_image, show_image
from tests.conftest import make_cloud
from tests.integration.cli import ivfarm
from tests.integration.conftest import TEST_ROOT
from tests.integration.sshd_targets import Fleet, start_fleet

pytestmark = [pytest.mark.root, pytest.mark.sshd]
HOSTS = 8


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    started = start_fleet(TEST_ROOT / f"sshd-{uuid.uuid4().hex[:6]}", HOSTS)
    yield started
    started.stop()


@pytest.fixture
def sync_cloud(fleet: Fleet, tmp_path: Path, fake_host) -> Iterator[Cloud]:  # type: ignore[no-untyped-def]
    """A cloud whose 8 worker hosts (fake hypervisors) have their image caches behind the fleet's sshds."""
    cloud = make_cloud(tmp_path / "state", image_cache=fleet.image_cache_config())
    for index, target in enumerate(fleet.targets):
        hosts.add_host(cloud, f"wn-{index}", fake_host(f"wn-{index}"), "worker",
                       ssh_target=target.ssh_target, cache_dir=str(target.cache_dir))
    image = tmp_path / "image.raw"
    image.write_bytes(os.urandom(8 * 1024 * 1024))
    add_image(cloud, "worker-image", image, public=True)
    yield cloud
    cloud.store.dispose()


def cached(fleet: Fleet, cloud: Cloud, index: int) -> Path:
    """Where target ``index`` keeps the test image."""
    return fleet.targets[index].cache_dir / Path(show_image(cloud, "worker-image").path).name


def test_sync_reaches_eight_hosts_in_log2_rounds(fleet: Fleet, sync_cloud: Cloud) -> None:
    done = ivfarm(sync_cloud, "image", "sync", "worker-image", "--output", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rounds"] == 4  # 1 + 2 + 4 copies cover 7 hosts, the 8th needs a 4th round
    by_round = sorted(h["round"] for h in report["hosts"])
    assert by_round == [1, 2, 2, 3, 3, 3, 3, 4]
    assert all(h["status"] == "copied" and h["seconds"] > 0 for h in report["hosts"])
    assert [h["source"] for h in report["hosts"] if h["round"] == 1] == ["repository"]
    assert sum(h["source"] == "repository" for h in report["hosts"]) == 4  # one per round; hosts seeded the rest
    expected = sha256(sync_cloud.config.image_dir / cached(fleet, sync_cloud, 0).name)
    assert {sha256(cached(fleet, sync_cloud, i)) for i in range(HOSTS)} == {expected}

    again = json.loads(ivfarm(sync_cloud, "image", "sync", "worker-image", "--fanout", "2", "-o", "json").stdout)
    assert {h["status"] for h in again["hosts"]} == {"present"} and again["rounds"] == 0


def test_corrupt_copies_are_detected_and_replaced_from_another_source(fleet: Fleet, sync_cloud: Cloud) -> None:
    assert ivfarm(sync_cloud, "image", "sync", "worker-image", "--fanout", "2", "-o", "json").returncode == 0
    good = sha256(cached(fleet, sync_cloud, 0))
    with cached(fleet, sync_cloud, 3).open("r+b") as handle:  # bit rot on wn-3
        handle.seek(4096)
        handle.write(b"\xff" * 16)
    cached(fleet, sync_cloud, 5).unlink()  # wn-5 lost its copy
    repository = sync_cloud.config.image_dir / cached(fleet, sync_cloud, 0).name
    with repository.open("r+b") as handle:  # and the repository's own copy went bad too
        handle.write(b"corrupt")
    fleet.targets[7].stop()  # wn-7 is down

    done = ivfarm(sync_cloud, "image", "sync", "worker-image", "--output", "json")
    assert done.returncode == 1  # wn-7 failed
    report = {h["host"]: h for h in json.loads(done.stdout)["hosts"]}
    assert report["wn-3"]["status"] == "replaced"
    assert report["wn-3"]["attempts"] == 2 and report["wn-3"]["source"] != "repository"  # the bad hop was retried
    assert report["wn-5"]["status"] == "copied" and report["wn-5"]["source"] != "repository"
    assert report["wn-7"]["status"] == "failed" and report["wn-7"]["error"]
    assert {report[f"wn-{i}"]["status"] for i in (0, 1, 2, 4, 6)} == {"present"}
    assert sha256(cached(fleet, sync_cloud, 3)) == sha256(cached(fleet, sync_cloud, 5)) == good


def test_launching_on_a_host_without_the_image_fetches_it_first(fleet: Fleet, sync_cloud: Cloud) -> None:
    for name in (f"wn-{i}" for i in range(1, HOSTS)):
        hosts.set_enabled(sync_cloud, name, False)
    [vm] = instances.launch(sync_cloud, LaunchRequest(image="worker-image", flavor="m1.tiny"))
    assert not cached(fleet, sync_cloud, 0).exists()
    provisioning.provision(sync_cloud, vm.id)
    copy = cached(fleet, sync_cloud, 0)
    assert sha256(copy) == sha256(sync_cloud.config.image_dir / copy.name)
    uri = hosts.show_host(sync_cloud, "wn-0").uri
    pool = sync_cloud.hypervisor.connection(uri).storagePoolLookupByName(f"{sync_cloud.cloud_id}-disks")
    volume = pool.storageVolLookupByName(disk_names(vm.id)[0])
    assert f"<path>{copy}</path>" in volume.XMLDesc(0)  # the overlay sits on the host's cached copy
