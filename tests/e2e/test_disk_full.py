"""The state directory's filesystem full (a small tmpfs mounted for the test): a launch fails cleanly
(the instance terminated with AWS's generic reason, its quota released, no half-written file left),
and the next launch works once space is freed. The database lives elsewhere, as on a site whose
store is PostgreSQL or on another disk."""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivfarm.services.compute import instances
from ivfarm.services.compute.provisioning import LAUNCH_FAILED
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.services.tenancy import quotas
from ivfarm.store import jobs
from tests.support.localsite import LocalSite

pytestmark = pytest.mark.root


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LocalSite]:
    state = tmp_path / "site" / "state"
    state.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0711", "ivfarm-disk-full", str(state)], check=True)
    try:
        built = LocalSite(tmp_path / "site", database_url=f"sqlite:///{tmp_path / 'store.db'}")
        built.add_host("w1", cpus=8, memory_mb=8192)
        yield built
        built.cloud.store.dispose()
    finally:
        subprocess.run(["umount", str(state)], check=True)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of ``directory``'s filesystem."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def launch_and_run(site: LocalSite, image: str, farm_id: int) -> str:
    [instance] = instances.launch(site.cloud, instances.LaunchRequest(image=image, flavor="m1.tiny", farm_id=farm_id))
    Provisioner(site.cloud, 1).run_until(lambda: jobs.outstanding(site.cloud.store) == 0)
    return instance.id


def test_a_launch_on_a_full_disk_fails_cleanly_and_works_once_freed(site: LocalSite) -> None:
    image = site.add_image("base")
    farm = site.add_farm("alpha", instances=2)
    state = site.cloud.config.state_dir
    filler = fill(state)
    before = files(state)

    failed = launch_and_run(site, image, farm.farm_id)
    with site.cloud.store.read() as session:
        instance = instances.get_instance(session, failed)
        assert (instance.state, instance.state_reason) == ("terminated", LAUNCH_FAILED)
        assert quotas.usage(session, farm.farm_id).instances == 0
    assert files(state) == before  # no half-written seed, disk or log

    filler.unlink()
    works = launch_and_run(site, image, farm.farm_id)
    with site.cloud.store.read() as session:
        assert instances.get_instance(session, works).state == "running"
        assert quotas.usage(session, farm.farm_id).instances == 1
    assert f"seeds/{works}.iso" in files(state)
