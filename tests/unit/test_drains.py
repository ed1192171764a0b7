"""Machine/Job Features and graceful draining on libvirt's test driver: what each VM reads, the
drain's life (announce, show, cancel, act once the grace is over) and the CLI around it."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ivfarm.cli.durations import parse_duration
from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidInput, InvalidState
from ivfarm.services.compute import drains, hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs import reconcile
from ivfarm.services.network.metadata_records import metadata_records
from ivfarm.services.network.routers import router_spec
from ivfarm.store.models import Farm, Instance
from tests.support.fake_hypervisors import fake_hypervisor

MIB, GIB = 1024**2, 1024**3


def features_of(cloud: Cloud, farm_id: int) -> dict[str, dict[str, dict[str, str]]]:
    """Private IP -> the Machine/Job Features its router would serve."""
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        records = metadata_records(cloud, session, farm, router_spec(cloud, session, farm))
    return {ip: record["features"] for ip, record in records.items()}


def running_vm(cloud: Cloud, farm: Farm, flavor: str = "m1.small", host_class: str = "worker") -> Instance:
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor=flavor, farm_id=farm.id,
                                                       host_class=host_class))
    provisioning.provision(cloud, instance.id)
    with cloud.store.read() as session:
        return session.get(Instance, instance.id)


def state(cloud: Cloud, instance_id: str) -> str:
    with cloud.store.read() as session:
        return session.get(Instance, instance_id).state


@pytest.fixture
def lab(cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str], raw_disk: Path) -> tuple[Cloud, Farm]:
    cloud = cloud_factory(mjf={"wall_limit_s": 7200})
    add_image(cloud, "base", raw_disk, public=True)
    hosts.add_host(cloud, "wn1", fake_host("wn1"), "worker", hs06_per_core=11.5)
    return cloud, lifecycle.create_farm(cloud, FarmRequest(name="lab"))


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1d", 86400),
                                          ("2H", 7200)])
def test_durations_read_as_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text,why", [("5x", "not a duration"), ("30", "not a duration"), ("", "not a duration"),
                                      ("m30", "not a duration"), ("-5m", "not a duration"), ("30m2h", "not a duration"),
                                      ("0s", "no time at all")])
def test_bad_durations_are_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_duration(text)


def test_features_come_from_the_host_the_flavor_and_the_site_limits(lab: tuple[Cloud, Farm]) -> None:
    cloud, farm = lab
    vm = running_vm(cloud, farm, "m1.medium")
    launched = int(vm.launched_at.timestamp())
    assert features_of(cloud, farm.id)[vm.ip] == {
        "machinefeatures": {"hs06": str(11.5 * vm.vcpus).rstrip("0").rstrip("."), "jobslots": "1",
                            "phys_cores": str(vm.vcpus), "log_cores": str(vm.vcpus), "total_cpu": str(vm.vcpus)},
        "jobfeatures": {"allocated_cpu": str(vm.vcpus), "wall_limit_secs": "7200", "cpu_limit_secs": str(7200 * vm.vcpus),
                        "max_rss_bytes": str(vm.memory_mb * MIB), "max_swap_bytes": "0",
                        "scratch_limit_bytes": str(vm.disk_gb * GIB), "jobstart_secs": str(launched),
                        "shutdowntime_job": str(launched + 7200)},
    }
    assert vm.vcpus == 2 and features_of(cloud, farm.id)[vm.ip]["machinefeatures"]["hs06"] == "23"
    assert hosts.set_hs06(cloud, "wn1", 9.75) == []
    assert features_of(cloud, farm.id)[vm.ip]["machinefeatures"]["hs06"] == "19.5"


def test_keys_without_a_value_are_absent(cloud: Cloud, fake_host: Callable[..., str], base_image) -> None:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "wn1", fake_host("wn1"), "worker")  # unrated; no wall limit in the config
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    vm = running_vm(cloud, farm)
    mjf = features_of(cloud, farm.id)[vm.ip]
    assert not {"hs06", "shutdowntime", "grace_secs"} & set(mjf["machinefeatures"])
    assert not {"wall_limit_secs", "cpu_limit_secs", "shutdowntime_job"} & set(mjf["jobfeatures"])


def test_a_drain_announces_shutdowntime_and_a_cancel_takes_it_back(lab: tuple[Cloud, Farm]) -> None:
    cloud, farm = lab
    vm = running_vm(cloud, farm)
    view = drains.drain_host(cloud, "wn1", 1800)
    deadline = int(view.deadline.timestamp())
    assert abs(view.deadline - dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1800)) < dt.timedelta(seconds=5)
    mjf = features_of(cloud, farm.id)[vm.ip]
    assert mjf["machinefeatures"]["shutdowntime"] == str(deadline) and mjf["machinefeatures"]["grace_secs"] == "1800"
    assert mjf["jobfeatures"]["shutdowntime_job"] == str(deadline)  # sooner than the wall limit's end
    shown = hosts.show_host(cloud, "wn1")
    assert (shown.enabled, shown.draining_until, shown.drain_grace_s) == (False, view.deadline, 1800)
    with pytest.raises(InvalidState, match="already draining until .* cancel it first"):
        drains.drain_host(cloud, "wn1", 60)
    with pytest.raises(InvalidState, match=r"is draining until .*\(ivfarm host undrain wn1\)"):
        hosts.set_enabled(cloud, "wn1", True)

    drains.cancel_host_drain(cloud, "wn1")
    shown = hosts.show_host(cloud, "wn1")
    assert (shown.enabled, shown.draining_until, shown.drain_grace_s) == (True, None, None)
    assert "shutdowntime" not in features_of(cloud, farm.id)[vm.ip]["machinefeatures"]
    with pytest.raises(InvalidState, match="not draining"):
        drains.cancel_host_drain(cloud, "wn1")
    assert state(cloud, vm.id) == "running"


def test_a_cancel_leaves_a_host_disabled_before_the_drain_disabled(lab: tuple[Cloud, Farm]) -> None:
    cloud, _ = lab
    hosts.set_enabled(cloud, "wn1", False)
    drains.drain_host(cloud, "wn1", 60)
    drains.cancel_host_drain(cloud, "wn1")
    assert not hosts.show_host(cloud, "wn1").enabled


@pytest.mark.parametrize("grace", [0, -5, 31 * 86400])
def test_a_grace_out_of_range_is_refused(lab: tuple[Cloud, Farm], grace: int) -> None:
    cloud, _ = lab
    with pytest.raises(InvalidInput, match="grace must be between"):
        drains.drain_host(cloud, "wn1", grace)
    assert hosts.show_host(cloud, "wn1").draining_until is None


@pytest.mark.parametrize("policy,after", [("terminate", "terminated"), ("stop", "stopped")])
def test_once_the_grace_is_over_worker_vms_end_by_policy(cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str],
                                                         raw_disk: Path, policy: str, after: str) -> None:
    cloud = cloud_factory(hosts={"drain_worker_policy": policy})
    add_image(cloud, "base", raw_disk, public=True)
    hosts.add_host(cloud, "wn1", fake_host("wn1"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    vm = running_vm(cloud, farm)
    view = drains.drain_host(cloud, "wn1", 600)
    assert drains.process_due(cloud).finished == []  # not yet due
    assert state(cloud, vm.id) == "running"

    report = drains.process_due(cloud, now=view.deadline + dt.timedelta(seconds=1))
    assert [(v.target, v.state, v.result) for v in report.finished] == [("wn1", "done", {vm.id: after})]
    assert state(cloud, vm.id) == after
    assert hosts.show_host(cloud, "wn1").draining_until is None and not hosts.show_host(cloud, "wn1").enabled
    assert drains.process_due(cloud, now=view.deadline + dt.timedelta(seconds=2)).finished == []  # once only


def test_a_vm_that_cannot_move_keeps_the_drain_for_the_next_pass(lab: tuple[Cloud, Farm], fake_host: Callable[..., str]) -> None:
    cloud, farm = lab
    hosts.add_host(cloud, "svc1", fake_host("svc1"), "service")
    service = running_vm(cloud, farm, host_class="service")
    view = drains.drain_host(cloud, "svc1", 60)
    report = drains.process_due(cloud, now=view.deadline)
    [pending] = report.pending
    assert pending.state == "active" and pending.result[service.id].startswith("failed: ")  # no other service host
    assert hosts.show_host(cloud, "svc1").draining_until == view.deadline
    assert state(cloud, service.id) == "running"


def test_a_vm_terminated_with_a_grace_ends_through_reconcile(lab: tuple[Cloud, Farm]) -> None:
    cloud, farm = lab
    vm, other = running_vm(cloud, farm), running_vm(cloud, farm)
    view = drains.drain_instance(cloud, vm.id, 1)
    mjf = features_of(cloud, farm.id)
    assert mjf[vm.ip]["machinefeatures"]["shutdowntime"] == str(int(view.deadline.timestamp()))
    assert "shutdowntime" not in mjf[other.ip]["machinefeatures"]
    with pytest.raises(InvalidState, match="cancel it first"):
        drains.drain_instance(cloud, vm.id, 60)

    time.sleep(max(0.0, (view.deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.05)
    report = reconcile.reconcile(cloud)
    assert [(f.kind, f.target) for f in report.findings if f.kind == "drain"] == [("drain", vm.id)]
    assert state(cloud, vm.id) == "terminated" and state(cloud, other.id) == "running"


def test_a_cancelled_vm_termination_does_not_happen(lab: tuple[Cloud, Farm]) -> None:
    cloud, farm = lab
    vm = running_vm(cloud, farm)
    view = drains.drain_instance(cloud, vm.id, 60)
    drains.cancel_instance_drain(cloud, vm.id)
    assert drains.process_due(cloud, now=view.deadline).finished == []
    assert state(cloud, vm.id) == "running" and "shutdowntime" not in features_of(cloud, farm.id)[vm.ip]["machinefeatures"]


def test_the_cli_drains_shows_and_cancels(ivfarm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    assert ivfarm("init").returncode == 0
    uri = fake_hypervisor(tmp_path / "wn1.xml", 8, 16384)
    added = ivfarm("host", "add", "wn1", "--uri", uri, "--class", "worker", "--hs06-per-core", "10")
    assert added.returncode == 0, added.stderr
    assert json.loads(ivfarm("host", "show", "wn1", "-o", "json").stdout)["hs06_per_core"] == 10

    bad = ivfarm("host", "drain", "wn1", "--grace", "5x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'5x' is not a duration: use digits with units d, h, m, s" in bad.stderr
    assert json.loads(ivfarm("host", "show", "wn1", "-o", "json").stdout)["enabled"] is True  # nothing done

    drained = ivfarm("host", "drain", "wn1", "--grace", "2h")
    assert drained.returncode == 0 and "host wn1 disabled and draining; shutdowntime" in drained.stdout
    shown = json.loads(ivfarm("host", "show", "wn1", "-o", "json").stdout)
    until = dt.datetime.fromisoformat(shown["draining_until"])
    assert shown["drain_grace_s"] == 7200 and shown["enabled"] is False
    assert str(int(until.timestamp())) in drained.stdout
    assert "draining until" in ivfarm("host", "show", "wn1").stdout

    again = ivfarm("host", "drain", "wn1", "--grace", "30m")
    assert again.returncode != 0 and "already draining until" in again.stderr and len(again.stderr.splitlines()) == 1
    set_ = ivfarm("host", "set", "wn1", "--hs06-per-core", "-1")
    assert set_.returncode != 0 and "--hs06-per-core must be above 0" in set_.stderr

    assert ivfarm("host", "undrain", "wn1").returncode == 0
    shown = json.loads(ivfarm("host", "show", "wn1", "-o", "json").stdout)
    assert (shown["draining_until"], shown["enabled"]) == (None, True)
    cancel = ivfarm("host", "drain", "wn1", "--cancel")
    assert cancel.returncode != 0 and cancel.stderr.strip() == "error: host wn1 is not draining"


def test_drains_on_both_databases(db_cloud: Cloud, fake_host: Callable[..., str], raw_disk: Path) -> None:
    add_image(db_cloud, "base", raw_disk, public=True)
    hosts.add_host(db_cloud, "wn1", fake_host("wn1"), "worker", hs06_per_core=8)
    farm = lifecycle.create_farm(db_cloud, FarmRequest(name="lab"))
    vm = running_vm(db_cloud, farm)
    first = drains.drain_host(db_cloud, "wn1", 60)
    drains.cancel_host_drain(db_cloud, "wn1")
    second = drains.drain_host(db_cloud, "wn1", 120)
    assert features_of(db_cloud, farm.id)[vm.ip]["machinefeatures"]["shutdowntime"] == str(int(second.deadline.timestamp()))
    assert drains.process_due(db_cloud, now=first.deadline).finished == []  # the cancelled one never acts
    [done] = drains.process_due(db_cloud, now=second.deadline).finished
    assert (done.id, done.state, done.result) == (second.id, "done", {vm.id: "terminated"})
