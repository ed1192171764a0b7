"""A host's libvirtd killed and restarted under queued work (a private second libvirtd serving
libvirt's test driver over its own socket, ``test+unix:///default?socket=...``): while it is down a launch fails
cleanly (terminated with AWS's generic reason, quota released) and a stop job fails without
hanging the provisioner, leaving the instance ``stopping``; once the daemon is back ``reconcile``
brings every instance to a stable state that matches the host, and launches work again.

The test driver keeps its domains in the daemon's memory, so the restart also loses them (as a
host reboot would); the test holds a connection so they survive between its own calls.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from sqlalchemy import select

from ivfarm.services.compute import hosts, instances
from ivfarm.services.compute.provisioning import LAUNCH_FAILED
from ivfarm.services.jobs import reconcile
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.services.tenancy import quotas
from ivfarm.store import jobs
from ivfarm.store.models import Job
from tests.integration import second_libvirtd
from tests.support.localsite import LocalSite
from tests.support.polling import poll_until

pytestmark = [pytest.mark.root, pytest.mark.libvirtd]


@pytest.fixture
def daemon() -> Iterator[second_libvirtd.SecondLibvirtd]:
    base = Path(tempfile.mkdtemp(prefix="ivfarm-lvrestart-", dir="/var/tmp"))
    started = second_libvirtd.start(base / "daemon")
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(base, ignore_errors=True)


def drain(site: LocalSite) -> None:
    Provisioner(site.cloud, 2).run_until(lambda: jobs.outstanding(site.cloud.store) == 0)


def launch(site: LocalSite, image: str, farm_id: int, count: int = 1) -> list[str]:
    return [i.id for i in instances.launch(site.cloud, instances.LaunchRequest(
        image=image, flavor="m1.tiny", farm_id=farm_id, count=count))]


def state(site: LocalSite, instance_id: str) -> str:
    with site.cloud.store.read() as session:
        return str(instances.get_instance(session, instance_id).state)


def test_jobs_on_a_host_whose_libvirtd_restarts(daemon: second_libvirtd.SecondLibvirtd, tmp_path: Path) -> None:
    uri = f"test+unix:///default?socket={daemon.root / 'sock' / 'libvirt-sock'}"  # a local host: seeds are files
    site = LocalSite(tmp_path / "site", settings={"provisioner": {"poll_s": 0.05}})
    try:
        hosts.add_host(site.cloud, "p1", uri, "worker", cpus=16, memory_mb=16384, disk_gb=1000)
        image = site.add_image("base")
        farm = site.add_farm("alpha", instances=5)
        hold = libvirt.open(uri)
        first, second = launch(site, image, farm.farm_id, 2)
        drain(site)
        assert (state(site, first), state(site, second)) == ("running", "running")

        pid = daemon.libvirtd_pid()
        daemon.kill_libvirtd()
        poll_until(lambda: pid is None or not os.path.exists(f"/proc/{pid}"), 10, 0.05, "libvirtd did not die")
        instances.begin_stop(site.cloud, first)
        [failed] = launch(site, image, farm.farm_id)
        drain(site)  # neither job hangs on the dead host
        with site.cloud.store.read() as session:
            outcomes = {(i, k): s for i, k, s in session.execute(
                select(Job.instance_id, Job.kind, Job.state).where(Job.instance_id.in_((first, failed))))}
            launched = instances.get_instance(session, failed)
            usage = quotas.usage(session, farm.farm_id)
        assert outcomes[first, "stop"] == "failed" and outcomes[failed, "provision"] == "failed", outcomes
        assert (launched.state, launched.state_reason) == ("terminated", LAUNCH_FAILED)
        assert usage.instances == 2  # the failed launch gave its quota back
        assert state(site, first) == "stopping"

        daemon.restart_libvirtd()
        hold = libvirt.open(uri)  # the restarted daemon's test instance, held for the rest of the test
        report = reconcile.reconcile(site.cloud)
        assert report.findings, "reconcile found nothing to repair"
        domains = {d.name(): bool(d.isActive()) for d in hold.listAllDomains()}
        for instance_id in (first, second):  # what the host shows (the restart lost the test driver's domains)
            shown = state(site, instance_id)
            assert shown in ("running", "stopped", "terminated")
            expected = {"running": True, "stopped": False, "terminated": None}[shown]
            assert domains.get(instances.domain_name(instance_id)) is expected, (instance_id, shown, domains)

        [works] = launch(site, image, farm.farm_id)
        drain(site)
        assert state(site, works) == "running"
        hold.close()
    finally:
        site.close()

