"""quota enforce: recount from the hypervisors, policies, newest first, lock, exit codes, idempotence."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ivfarm.cloud import Cloud
from ivfarm.errors import LockHeld
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.jobs import enforcement
from ivfarm.store.models import Farm, Instance


@pytest.fixture
def crowded(cloud: Cloud, fake_host: Callable[..., str], base_image) -> tuple[Cloud, list[str]]:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w", cpus=32, memory_mb=32768), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab", quotas={"instances": 4}))
    lifecycle.create_farm(cloud, FarmRequest(name="quiet"))
    ids = []
    for _ in range(4):
        [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
        provisioning.provision(cloud, instance.id)
        ids.append(instance.id)
    with cloud.store.write() as session:  # an admin lowers the limit below what runs
        session.query(Farm).filter_by(name="lab").one().quota_instances = 2
    return cloud, ids


def states(cloud: Cloud, ids: list[str]) -> list[str]:
    with cloud.store.read() as session:
        return [session.get(Instance, i).state for i in ids]


def test_within_quota_exits_zero(cloud: Cloud) -> None:
    lifecycle.create_farm(cloud, FarmRequest(name="empty"))
    result = enforcement.enforce(cloud, "terminate")
    assert result.exit_code == 0 and [v.over for v in result.farms] == [[]]


def test_report_policy_changes_nothing(crowded) -> None:  # type: ignore[no-untyped-def]
    cloud, ids = crowded
    result = enforcement.enforce(cloud, "report")
    assert result.exit_code == 1
    [lab] = [v for v in result.farms if v.farm == "lab"]
    assert lab.over == ["instances"] and lab.usage["instances"] == 4
    assert [a["instance"] for a in lab.actions] == ids[:1:-1]  # the two newest
    assert states(cloud, ids) == ["running"] * 4


def test_stop_policy_stops_the_newest_and_is_idempotent(crowded) -> None:  # type: ignore[no-untyped-def]
    cloud, ids = crowded
    assert enforcement.enforce(cloud, "stop", dry_run=True).exit_code == 1
    assert states(cloud, ids) == ["running"] * 4
    assert enforcement.enforce(cloud, "stop").exit_code == 1
    assert states(cloud, ids) == ["running", "running", "stopped", "stopped"]
    again = enforcement.enforce(cloud, "stop")
    assert again.exit_code == 0 and all(not v.actions for v in again.farms)


def test_terminate_policy_and_drift_from_the_hypervisor(crowded) -> None:  # type: ignore[no-untyped-def]
    cloud, ids = crowded
    uri = hosts.list_hosts(cloud)[0].uri
    cloud.hypervisor.stop(uri, domain_name(ids[3]), force=True)  # it died; the store still says running
    result = enforcement.enforce(cloud, "terminate")
    [lab] = [v for v in result.farms if v.farm == "lab"]
    assert lab.usage["instances"] == 3  # recounted from libvirt, not from the store
    assert [a["instance"] for a in lab.actions] == [ids[2]]
    assert states(cloud, ids)[:3] == ["running", "running", "terminated"]


def test_a_second_run_is_refused_while_the_first_holds_the_lock(crowded) -> None:  # type: ignore[no-untyped-def]
    cloud, _ = crowded
    with open(cloud.config.state_dir / "run" / "quota-enforce.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LockHeld):
            enforcement.enforce(cloud, "report")


def test_cli_exit_codes_and_json(tmp_path: Path, raw_disk: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "vrouter": {"backend": "none"}}))
    ivfarm = [str(Path(sys.executable).with_name("ivfarm")), "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "IVFARM_DATABASE"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ivfarm, *args], capture_output=True, text=True, env=env, timeout=60)

    run("init")
    run("farm", "create", "lab")
    ok = run("quota", "enforce", "--output", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["farms"][0]["farm"] == "lab"
    (tmp_path / "state" / "run").mkdir(exist_ok=True)
    with open(tmp_path / "state" / "run" / "quota-enforce.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = run("quota", "enforce")
    assert busy.returncode == 2 and "another 'quota-enforce' run" in busy.stderr
    assert run("quota", "set", "lab", "--instances", "1").returncode == 0
    shown = json.loads(run("quota", "show", "lab", "-o", "json").stdout)
    assert {r["resource"]: r["limit"] for r in shown}["instances"] == 1
    assert run("quota", "set", "lab").returncode != 0
