"""CreateImage's job and what reconcile does with an image a crash left pending (test driver)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import update

from ivfarm.cli.main import cli
from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidState, Unavailable
from ivfarm.services.compute import hosts, image_capture, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.jobs import reconcile
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store import jobs
from ivfarm.store.models import Farm, Image, Job


@pytest.fixture
def world(cloud: Cloud, fake_host: Callable[..., str], base_image) -> tuple[Cloud, Farm, str]:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    provisioning.provision(cloud, instance.id)
    return cloud, farm, instance.id


def image(cloud: Cloud, image_id: str) -> Image:
    with cloud.store.read() as session:
        return session.get(Image, image_id)


def drain(cloud: Cloud) -> None:
    worker = Provisioner(cloud, 1)
    while worker.run_one():
        pass


def test_the_job_makes_a_standalone_checksummed_image_once(world) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, instance_id = world
    image_id = image_capture.begin_create_image(cloud, farm.id, instance_id, "lab image", no_reboot=True)
    assert image(cloud, image_id).state == "pending"
    with pytest.raises(Unavailable):
        instances.launch(cloud, LaunchRequest(image=image_id, flavor="m1.small", farm_id=farm.id))
    drain(cloud)
    made = image(cloud, image_id)
    assert made.state == "available" and made.disk_format == "qcow2" and len(made.sha256) == 64
    assert Path(made.path).is_file() and not Path(made.path + ".partial").exists()
    assert made.owner_farm_id == farm.id and made.public is False
    [child] = instances.launch(cloud, LaunchRequest(image=image_id, flavor="m1.small", farm_id=farm.id))
    provisioning.provision(cloud, child.id)


def test_a_failed_copy_leaves_no_file_and_marks_the_image_failed(world) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, instance_id = world
    image_id = image_capture.begin_create_image(cloud, farm.id, instance_id, "broken image", no_reboot=True)
    base = next(i for i in _images(cloud) if i.name == "base")
    Path(base.path).rename(base.path + ".moved")  # the disk it flattens cannot be read
    try:
        drain(cloud)
    finally:
        Path(base.path + ".moved").rename(base.path)
    failed = image(cloud, image_id)
    assert failed.state == "failed" and not Path(failed.path).exists()
    assert not Path(failed.path + ".partial").exists()
    with cloud.store.read() as session:
        assert session.query(Job).filter_by(kind=image_capture.KIND).one().state == "failed"


def _images(cloud: Cloud) -> list[Image]:
    with cloud.store.read() as session:
        return list(session.query(Image))


def test_reconcile_fails_an_image_whose_job_was_lost(world) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, instance_id = world
    image_id = image_capture.begin_create_image(cloud, farm.id, instance_id, "lost image", no_reboot=True)
    partial = Path(image(cloud, image_id).path + ".partial")
    partial.write_bytes(b"half")
    assert image_capture.stuck_images(cloud) == []  # its job is queued: someone will make it
    with cloud.store.write() as session:  # the job row was lost with a crash
        session.execute(update(Job).where(Job.kind == image_capture.KIND).values(state="failed"))
    assert ("image", "mark failed") in [(f.kind, f.action) for f in reconcile.reconcile(cloud).findings]
    assert image(cloud, image_id).state == "failed" and not partial.exists()
    assert ("image", "mark failed") not in [(f.kind, f.action) for f in reconcile.reconcile(cloud).findings]


def test_a_pending_instance_cannot_be_imaged(world) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, _ = world
    [pending] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    with pytest.raises(InvalidState):
        image_capture.begin_create_image(cloud, farm.id, pending.id, "too early")
    assert jobs.outstanding(cloud.store, [pending.id]) == 1  # only its provision job


def test_image_list_names_the_owning_farm(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cloud, farm, instance_id = world
    image_capture.begin_create_image(cloud, farm.id, instance_id, "listed image", no_reboot=True)
    drain(cloud)
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(cloud.config.state_dir), "vrouter": {"backend": "none"}}))
    listed = CliRunner().invoke(cli, ["--config", str(config), "image", "list", "--output", "json"])
    assert listed.exit_code == 0, listed.output
    owners = {row["name"]: (row["owner"], row["state"]) for row in json.loads(listed.output)}
    assert owners == {"base": ("site", "available"), "listed image": ("lab", "available")}
    published = CliRunner().invoke(cli, ["--config", str(config), "image", "publish", "listed image"])
    assert published.exit_code == 0 and image(cloud, next(i.id for i in _images(cloud) if i.name == "listed image")).public
