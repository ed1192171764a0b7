"""Host failure on libvirt's test driver: grace period, fencing, worker policies, report shape."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.store.models import Instance


@pytest.fixture
def workers(cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str], raw_disk: Path):  # type: ignore[no-untyped-def]
    """A cloud with workers wn1 (runs one VM) and wn2; ``kill()`` makes wn1 unreachable."""
    from ivfarm.services.images.catalog import add_image

    def build(**hosts_config: object) -> tuple[Cloud, str, Callable[[], None]]:
        cloud = cloud_factory(hosts=hosts_config)
        dead = fake_host("wn1")
        hosts.add_host(cloud, "wn1", dead, "worker")
        add_image(cloud, "base", raw_disk, public=True)
        [vm] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small"))
        provisioning.provision(cloud, vm.id)
        hosts.add_host(cloud, "wn2", fake_host("wn2"), "worker")

        def kill() -> None:
            Path(dead.removeprefix("test://")).unlink()
            cloud.hypervisor.forget(dead)

        return cloud, vm.id, kill

    return build


def state(cloud: Cloud, instance_id: str) -> tuple[str, str, str]:
    with cloud.store.read() as session:
        instance = session.get(Instance, instance_id)
        return instance.state, instance.host.name, instance.state_reason


def test_a_host_is_waited_for_then_failed_over_and_the_report_is_json(workers) -> None:  # type: ignore[no-untyped-def]
    cloud, vm, kill = workers(fence_command="true", worker_failure_policy="recreate")
    assert [(h.host, h.status, h.action) for h in check_hosts(cloud, grace_s=60).hosts] == [
        ("wn1", "up", "none"), ("wn2", "up", "none")]
    kill()
    first = check_hosts(cloud, grace_s=60)
    assert [(h.host, h.reachable, h.status, h.action) for h in first.hosts] == [
        ("wn1", False, "unreachable", "waiting"), ("wn2", True, "up", "none")]
    assert "cannot connect" in first.hosts[0].error and state(cloud, vm)[:2] == ("running", "wn1")
    assert hosts.show_host(cloud, "wn1").status == "unreachable"

    report = check_hosts(cloud, grace_s=0)
    failed = report.hosts[0]
    assert (failed.status, failed.action, failed.fence["exit_code"]) == ("fenced", "failed-over", 0)
    assert [(r.instance_id, r.action, r.target) for r in failed.instances] == [(vm, "recreated", "wn2")]
    assert state(cloud, vm)[:2] == ("running", "wn2")
    reason = state(cloud, vm)[2]  # what DescribeInstances shows the tenant: no host names (issue 13 item 7)
    assert reason == "Server.HostFailure: the instance's host failed; recreated on another host"
    assert json.loads(json.dumps(report.as_dict()))["hosts"][0]["instances"][0]["action"] == "recreated"
    assert check_hosts(cloud, grace_s=0).hosts[0].action == "none"  # fenced hosts are left alone
    hosts.set_enabled(cloud, "wn1", True)  # the sysadmin repaired it
    assert hosts.show_host(cloud, "wn1").status == "up"


@pytest.mark.parametrize("config,detail", [
    ({"fence_command": None, "worker_failure_policy": "recreate"}, "not fenced"),
    ({"fence_command": "exit 3", "worker_failure_policy": "recreate"}, "not fenced"),
    ({"fence_command": "true", "worker_failure_policy": "leave"}, "worker_failure_policy leave"),
])
def test_worker_vms_are_left_stopped_without_fencing_or_by_policy(workers, config, detail: str) -> None:  # type: ignore[no-untyped-def]
    cloud, vm, kill = workers(**config)
    kill()
    [failed, _] = check_hosts(cloud, grace_s=0).hosts
    assert [(r.action, r.detail) for r in failed.instances] == [("left", f"marked stopped ({detail})")]
    assert state(cloud, vm)[:2] == ("stopped", "wn1")
    assert failed.action == ("failed-over" if config["fence_command"] == "true" else "not-fenced")


def test_dry_run_changes_nothing_and_a_host_that_answers_again_recovers(workers) -> None:  # type: ignore[no-untyped-def]
    cloud, vm, kill = workers(fence_command="true", worker_failure_policy="recreate")
    uri = hosts.show_host(cloud, "wn1").uri
    node = Path(uri.removeprefix("test://")).read_text()
    kill()
    report = check_hosts(cloud, grace_s=0, dry_run=True)
    assert (report.hosts[0].action, report.hosts[0].instances) == ("failed-over", [])
    assert hosts.show_host(cloud, "wn1").status == "up" and state(cloud, vm)[0] == "running"
    assert check_hosts(cloud, grace_s=3600).hosts[0].action == "waiting"
    Path(uri.removeprefix("test://")).write_text(node)
    assert check_hosts(cloud, grace_s=3600).hosts[0].action == "recovered"
    assert hosts.show_host(cloud, "wn1").status == "up"
