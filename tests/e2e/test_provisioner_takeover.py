"""Two ``ivfarm provisioner`` processes on PostgreSQL: one is killed with SIGKILL in the middle of a
job; once its heartbeat lapses the other takes that job over and every launch ends up running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ivfarm.services.compute import instances
from ivfarm.store import jobs
from ivfarm.store.models import Instance, Job
from tests.support.localsite import LocalSite
from tests.support.polling import poll_until
from tests.support.postgres import scratch_schema

pytestmark = pytest.mark.postgres
LAUNCHES = 40


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LocalSite]:
    base = os.environ.get("IVFARM_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("IVFARM_TEST_POSTGRES_URL is not set")
    with scratch_schema(base, "ivfarm_takeover") as url:
        built = LocalSite(tmp_path / "site", database_url=url,
                          settings={"journal": {"heartbeat_s": 0.3, "heartbeat_lapse_s": 3}})
        yield built
        built.cloud.store.dispose()


def provisioner(site: LocalSite, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("IVFARM_DATABASE", "IVFARM_CONFIG")}
    log = (site.root / f"{name}.log").open("ab")
    return subprocess.Popen([str(Path(sys.executable).with_name("ivfarm")), "--config", str(site.config_path),
                             "provisioner", "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)


def running_job(site: LocalSite, pid: int) -> int | None:
    with site.cloud.store.read() as session:
        return session.scalar(select(Job.id).where(Job.state == "running", Job.worker.endswith(f":{pid}")))


def test_a_killed_provisioners_job_is_finished_by_the_other(site: LocalSite) -> None:
    site.add_host("w1", cpus=512, memory_mb=1 << 20)
    image = site.add_image("base", size_mb=256)  # big enough that a build takes a while
    farm = site.add_farm("alpha", instances=LAUNCHES, vcpus=LAUNCHES, memory_mb=LAUNCHES * 512)
    ids = [i.id for i in instances.launch(site.cloud, instances.LaunchRequest(
        image=image, flavor="m1.tiny", farm_id=farm.farm_id, count=LAUNCHES))]
    first = provisioner(site, "first")
    try:
        poll_until(lambda: running_job(site, first.pid), 30, 0.005, "the first provisioner took no job")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        orphan = running_job(site, first.pid)
        assert orphan is not None, "the job finished before the kill; nothing was left to take over"
        second = provisioner(site, "second")
        try:
            poll_until(lambda: jobs.outstanding(site.cloud.store) == 0, 120, 0.2, "the queue was not drained")
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    with site.cloud.store.read() as session:
        assert set(session.scalars(select(Instance.state).where(Instance.id.in_(ids)))) == {"running"}
        taken = session.get(Job, orphan)
        assert taken is not None and taken.state == "done" and taken.attempts == 2
        assert taken.worker and taken.worker.endswith(f":{second.pid}")
        assert session.scalars(select(Job.state).where(Job.kind == "provision")).all() == ["done"] * LAUNCHES
