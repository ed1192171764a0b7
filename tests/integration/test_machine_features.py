"""Machine/Job Features and a graceful drain as a real guest sees them, behind a netns router.

One worker VM (m1.tiny, 1 vCPU) on a host rated 10 HS06 per core reads its machine and job
features over HTTP from its farm's router (busybox wget), finds their URLs in its NoCloud seed,
its EC2 metadata and its tags; after ``host drain --grace`` it reads ``shutdowntime``, and once
the grace is over ``ivfarm reconcile`` terminates it (the default worker policy).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.tenancy import tags
from ivfarm.store.models import Instance
from tests.integration.conftest import wait_for_console
from tests.integration.guest import guest_exec

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

MDS = "http://169.254.169.254"
GRACE_S = 15
IVFARM = str(Path(sys.executable).with_name("ivfarm"))
REPO = Path(__file__).resolve().parents[2]


def cli(cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    """The ivfarm command on this cloud's configuration, as the sysadmin runs it."""
    config = cloud.config.state_dir / "ivfarm.yaml"
    config.write_text(yaml.safe_dump(cloud.config.data))
    env = {**os.environ, "IVFARM_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    env.pop("IVFARM_DATABASE", None)
    return subprocess.run([IVFARM, *args], capture_output=True, text=True, env=env, timeout=120)


def fetch(instance_id: str, path: str) -> tuple[int, str]:
    """(wget's exit status, body) of GET path from inside the guest."""
    return guest_exec(instance_id, f"timeout 4 wget -q -O - {MDS}{path}")


def state(cloud: Cloud, instance_id: str) -> str:
    with cloud.store.read() as session:
        return session.get(Instance, instance_id).state


def test_a_guest_reads_its_features_and_its_shutdown_time(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns", mjf={"wall_limit_s": 86400})
    assert hosts.set_hs06(cloud, "local", 10.0) == []
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="wlcg"))
    [vm] = instances.launch(cloud, LaunchRequest(image="guest", flavor="m1.tiny", farm_id=farm.id, name="pilot"))
    provisioning.provision(cloud, vm.id)
    wait_for_console(cloud, vm.id, "IVFARM-GUEST: ready")

    assert fetch(vm.id, "/machinefeatures/hs06") == (0, "10")
    assert fetch(vm.id, "/jobfeatures/allocated_cpu") == (0, "1")
    assert fetch(vm.id, "/jobfeatures/wall_limit_secs") == (0, "86400")
    assert fetch(vm.id, "/machinefeatures/shutdowntime")[0] != 0  # 404: no drain yet
    status, listing = fetch(vm.id, "/machinefeatures/")
    assert status == 0 and {"hs06", "jobslots", "total_cpu"} <= set(listing.split())
    urls = {"machinefeatures": f"{MDS}/machinefeatures", "jobfeatures": f"{MDS}/jobfeatures"}
    assert fetch(vm.id, "/latest/meta-data/machinefeatures") == (0, urls["machinefeatures"])
    status, seed = guest_exec(vm.id, "grep features /seed/meta-data")
    assert status == 0 and urls["machinefeatures"] in seed and urls["jobfeatures"] in seed
    assert {t.key: t.value for t in tags.list_tags(cloud, farm.id) if t.resource_id == vm.id} == urls

    drained = cli(cloud, "host", "drain", "local", "--grace", f"{GRACE_S}s")
    assert drained.returncode == 0 and drained.stderr == "", drained.stderr
    deadline = hosts.show_host(cloud, "local").draining_until
    assert deadline is not None
    shutdowntime = str(int(deadline.timestamp()))
    assert f"shutdowntime {deadline:%Y-%m-%d %H:%M:%S} UTC ({shutdowntime})" in drained.stdout
    assert fetch(vm.id, "/machinefeatures/shutdowntime") == (0, shutdowntime)
    assert fetch(vm.id, "/jobfeatures/shutdowntime_job") == (0, shutdowntime)
    assert fetch(vm.id, "/machinefeatures/grace_secs") == (0, str(GRACE_S))
    shown = json.loads(cli(cloud, "host", "show", "local", "--output", "json").stdout)
    assert (shown["drain_grace_s"], shown["enabled"], shown["hs06_per_core"]) == (GRACE_S, False, 10.0)

    time.sleep(max(0.0, (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.5)
    done = cli(cloud, "reconcile", "--output", "json")
    assert done.returncode == 1, done.stderr  # acted
    findings = [(f["target"], f["action"]) for f in json.loads(done.stdout)["findings"] if f["kind"] == "drain"]
    assert findings == [("local", f"done ({vm.id} terminated)")], done.stdout
    assert state(cloud, vm.id) == "terminated"
    assert hosts.show_host(cloud, "local").draining_until is None
