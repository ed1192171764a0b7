"""``kill -9`` of the API server and of the provisioners at random moments while clients launch,
stop, start and terminate instances; then everything restarts, the queue drains, ``ivfarm
reconcile`` runs, and the store and the hypervisor agree: every instance in a stable state, every
job done or failed, one domain (and root disk, and seed) for each instance that is not terminated
and none for the others, and each farm's quota usage what its rows add up to.

The host is libvirt's test driver inside the machine's libvirtd (``test+unix:///default``), so the
domains a killed process made outlive it; the test holds a connection for the whole run (the
daemon frees that test instance when its last connection closes) and removes what it made.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from sqlalchemy import func, select

from ivfarm.services.compute import hosts
from ivfarm.services.compute.instances import domain_name
from ivfarm.services.tenancy import quotas
from ivfarm.store import jobs
from ivfarm.store.models import Instance, Job
from tests.support.localsite import LocalSite, QueryClient
from tests.support.polling import poll_until
from tests.support.postgres import scratch_schema

pytestmark = pytest.mark.libvirtd
HOST_URI = "test+unix:///default"
CHAOS_S = 20.0
STABLE = {"running", "stopped", "terminated"}
IVFARM = str(Path(sys.executable).with_name("ivfarm"))
SETTINGS = {"journal": {"heartbeat_s": 0.3, "heartbeat_lapse_s": 3}, "provisioner": {"poll_s": 0.1}}


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LocalSite, int]]:
    """A site on SQLite (one provisioner) or PostgreSQL (two), host w1 in the shared libvirtd."""
    hold = libvirt.open(HOST_URI)
    try:
        if request.param == "sqlite":
            built = LocalSite(tmp_path / "site", settings=SETTINGS)
            yield from _with_host(built, hold, 1)
        else:
            base = os.environ.get("IVFARM_TEST_POSTGRES_URL")
            if not base:
                pytest.skip("IVFARM_TEST_POSTGRES_URL is not set")
            with scratch_schema(base, "ivfarm_kill") as url:
                yield from _with_host(LocalSite(tmp_path / "site", database_url=url, settings=SETTINGS), hold, 2)
    finally:
        hold.close()


def _with_host(built: LocalSite, conn: libvirt.virConnect, provisioners: int) -> Iterator[tuple[LocalSite, int]]:
    try:
        hosts.add_host(built.cloud, "w1", HOST_URI, "worker", cpus=256, memory_mb=1 << 20, disk_gb=10**5)
        yield built, provisioners
    finally:
        built.stop()
        _remove_traces(built, conn)
        built.close()


def _remove_traces(built: LocalSite, conn: libvirt.virConnect) -> None:
    """Domains and pools of this site in the shared test-driver instance."""
    with built.cloud.store.read() as session:
        names = {domain_name(i) for i in session.scalars(select(Instance.id))}
    for domain in conn.listAllDomains():
        if domain.name() in names:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    for pool in conn.listAllStoragePools():
        if pool.name().startswith(built.cloud.cloud_id):
            for volume in pool.listAllVolumes():
                volume.delete()
            if pool.isActive():
                pool.destroy()
            pool.undefine()


class Fleet:
    """The API server and the provisioners of the site, each killed and restarted at will."""

    def __init__(self, site: LocalSite, provisioners: int) -> None:
        self.site = site
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * provisioners
        self.env = {k: v for k, v in os.environ.items() if k not in ("IVFARM_DATABASE", "IVFARM_CONFIG")}

    def start_api(self) -> None:
        self.site.start(args=("--no-provisioner",))

    def start_worker(self, n: int) -> None:
        with (self.site.root / f"provisioner{n}.log").open("ab") as log:
            self.workers[n] = subprocess.Popen([IVFARM, "--config", str(self.site.config_path), "provisioner",
                                                "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, env=self.env)

    def kill(self, target: str) -> None:
        """SIGKILL ``api`` or ``worker<n>``, then start it again."""
        if target == "api":
            process = self.site.process
            assert process is not None
            process.send_signal(signal.SIGKILL)
            process.wait()
            self.site.process = None
            self.start_api()
            return
        n = int(target.removeprefix("worker"))
        worker = self.workers[n]
        assert worker is not None
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        self.start_worker(n)

    def stop(self) -> None:
        self.site.stop()
        for worker in self.workers:
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(60)


def chaos_client(site: LocalSite, keys: tuple[str, str], ami: str, until: float, made: set[str],
                 seed: int) -> None:
    """Launch, stop, start and terminate at random until ``until``; refusals and a dead server are expected."""
    rng = random.Random(seed)
    client: QueryClient | None = None
    while time.monotonic() < until:
        if client is None or client.endpoint != site.endpoint:
            client = QueryClient(site.endpoint, *keys, site.region)
        action = rng.choice(["run", "run", "stop", "start", "terminate"])
        params = {"Action": "RunInstances", "ImageId": ami, "InstanceType": "m1.tiny", "MinCount": "1",
                  "MaxCount": str(rng.randint(1, 4))}
        if action != "run" and made:
            params = {"Action": f"{action.capitalize()}Instances", "InstanceId.1": rng.choice(sorted(made))}
        try:
            _, body = client.call(params)
        except OSError:  # the server was killed under the request
            client, body = None, b""
            time.sleep(0.1)
        made.update(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", body.decode(errors="replace")))


def test_kill_9_at_random_points_leaves_a_consistent_cloud(site: tuple[LocalSite, int]) -> None:
    built, provisioners = site
    ami = built.add_image("base")
    farm = built.add_farm("alpha", instances=25, vcpus=25, memory_mb=25 * 128)
    fleet = Fleet(built, provisioners)
    fleet.start_api()
    for n in range(provisioners):
        fleet.start_worker(n)
    made: set[str] = set()
    rng = random.Random(11)
    until = time.monotonic() + CHAOS_S
    clients = [threading.Thread(target=chaos_client, args=(built, (farm.access_key, farm.secret_key), ami, until,
                                                           made, seed)) for seed in range(3)]
    for client in clients:
        client.start()
    kills = 0
    try:
        while time.monotonic() < until:
            time.sleep(rng.uniform(0.3, 1.5))
            targets = ["api", *(f"worker{n}" for n in range(provisioners))]
            for target in rng.sample(targets, rng.randint(1, len(targets))):
                fleet.kill(target)
                kills += 1
        for client in clients:
            client.join()
        poll_until(lambda: jobs.outstanding(built.cloud.store) == 0, 120, 0.2, "the queue was not drained")
    finally:
        fleet.stop()
    reconciled = subprocess.run([IVFARM, "--config", str(built.config_path), "reconcile"], capture_output=True,
                                text=True, env=fleet.env, timeout=300)
    assert reconciled.returncode in (0, 1), reconciled.stdout + reconciled.stderr  # 1: it repaired something
    assert kills >= 5 and len(made) >= 10, (kills, len(made))

    conn = libvirt.open(HOST_URI)
    try:
        domains = {d.name(): bool(d.isActive()) for d in conn.listAllDomains()}
        pool = conn.storagePoolLookupByName(f"{built.cloud.cloud_id}-disks")
        volumes = set(pool.listVolumes())
    finally:
        conn.close()
    with built.cloud.store.read() as session:
        rows = list(session.scalars(select(Instance)))
        states = {i.id: str(i.state) for i in rows}
        job_states = set(session.scalars(select(Job.state)))
        usage = quotas.usage(session, farm.farm_id)
        counted = session.execute(select(func.count(), func.coalesce(func.sum(Instance.vcpus), 0),
                                         func.coalesce(func.sum(Instance.memory_mb), 0)).where(
            Instance.farm_id == farm.farm_id, Instance.state.in_(quotas.COUNTED_STATES))).one()
    assert made <= set(states)
    assert set(states.values()) <= STABLE, states
    assert job_states <= {"done", "failed"}
    ours = {domain_name(i): i for i in states}
    for name, active in domains.items():
        if name in ours:
            assert states[ours[name]] != "terminated", f"{name} is left of a terminated instance"
            assert active == (states[ours[name]] == "running"), f"{name} active={active}, {states[ours[name]]}"
    seeds = built.cloud.config.state_dir / "seeds"
    for instance_id, state in states.items():
        alive = state != "terminated"
        assert (domain_name(instance_id) in domains) == alive, f"{instance_id} is {state}"
        assert (f"{instance_id}-root.qcow2" in volumes) == alive, f"{instance_id} is {state}: root disk"
        assert (seeds / f"{instance_id}.iso").exists() == alive, f"{instance_id} is {state}: seed"
    assert {v for v in volumes if v.startswith("i-")} <= {f"{i}-root.qcow2" for i, s in states.items() if s != "terminated"}
    assert (usage.instances, usage.vcpus, usage.memory_mb) == tuple(counted)
