"""APEL cloud accounting on the libvirt test driver: counters sampled by collect, records exported as
ssmsend's dirq queue, read back by the message format's rules and summed against the VMs that ran."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import grid_identity, lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs import accounting
from ivfarm.store.models import Host, Instance, UsageRecord
from tests.conftest import make_cloud
from tests.support.apel_messages import read_queue

IVFARM = str(Path(sys.executable).with_name("ivfarm"))
T0 = dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
TEST_DRIVER_CPU_S = 48.772617035  # the test driver's constant getCPUStats cpu_time of a running domain
SITE = {"site_name": "IVFARM-TEST", "cloud_compute_service": "ivfarm test cloud", "cloud_type": "ivfarm"}


@pytest.fixture
def site(tmp_path: Path, raw_disk: Path, fake_host: Callable[..., str]) -> Iterator[Cloud]:
    """A cloud with an APEL site name, two fake worker hosts and the public image ``base``."""
    cloud = make_cloud(tmp_path / "state", accounting={"apel": SITE})
    add_image(cloud, "base", raw_disk, public=True)
    hosts.add_host(cloud, "w1", fake_host("w1"), "worker")
    hosts.add_host(cloud, "w2", fake_host("w2"), "worker")
    yield cloud
    cloud.store.dispose()


def run_vm(cloud: Cloud, farm_id: int, flavor: str, launched: dt.datetime = T0) -> str:
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor=flavor, farm_id=farm_id))
    provisioning.provision(cloud, instance.id)
    with cloud.store.write() as session:
        session.get_one(Instance, instance.id).launched_at = launched
    return instance.id


def samples(cloud: Cloud, instance_id: str) -> list[UsageRecord]:
    with cloud.store.read() as session:
        return list(session.scalars(select(UsageRecord).where(UsageRecord.resource_id == instance_id)
                                    .order_by(UsageRecord.start)))


def cli(cloud: Cloud, tmp_path: Path, *args: str, apel: dict[str, object] | None = None) -> subprocess.CompletedProcess[str]:
    """The ivfarm command on this cloud's store, as the site's cron runs it."""
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(cloud.config.state_dir), "vrouter": {"backend": "none"},
                                      "accounting": {"apel": SITE if apel is None else apel}}))
    env = {**os.environ, "IVFARM_CONFIG": str(config)}
    env.pop("IVFARM_DATABASE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    return subprocess.run([IVFARM, *args], capture_output=True, text=True, env=env, timeout=60)


def test_collect_counts_cpu_and_traffic_per_boot(site: Cloud) -> None:
    farm = lifecycle.create_farm(site, FarmRequest(name="lab"))
    vm = run_vm(site, farm.id, "m1.small")
    accounting.collect(site, now=T0 + HOUR)
    accounting.collect(site, now=T0 + 2 * HOUR)
    instances.stop(site, vm)
    accounting.collect(site, now=T0 + 3 * HOUR)
    instances.start(site, vm)
    accounting.collect(site, now=T0 + 4 * HOUR)
    first, same_boot, stopped, restarted = samples(site, vm)
    assert first.cpu_s == pytest.approx(TEST_DRIVER_CPU_S) and first.net_in_bytes > 0 and first.net_out_bytes > 0
    assert same_boot.cpu_s == 0 and same_boot.boot_id == first.boot_id  # the counter did not grow
    assert same_boot.net_in_bytes == same_boot.rx_total - first.rx_total
    assert not stopped.running and stopped.cpu_s == 0 and stopped.cpu_time_ns is None
    assert restarted.boot_id != first.boot_id and restarted.cpu_s == pytest.approx(TEST_DRIVER_CPU_S)  # reset


def test_a_vm_that_moved_host_counts_from_zero_there(site: Cloud) -> None:
    farm = lifecycle.create_farm(site, FarmRequest(name="lab"))
    vm = run_vm(site, farm.id, "m1.small")
    accounting.collect(site, now=T0 + HOUR)
    with site.store.write() as session:
        instance = session.get_one(Instance, vm)
        source = instance.host
        target = session.scalar(select(Host).where(Host.name == "w2"))
        assert source is not None and target is not None
        name = next(d.name for d in site.hypervisor.list_domains(source.uri) if d.ivfarm_id == vm)
        xml = site.hypervisor.domain_xml(source.uri, name)
        site.hypervisor.undefine(source.uri, name)
        site.hypervisor.define_and_start(target.uri, xml)
        instance.host_id = target.id
    accounting.collect(site, now=T0 + 2 * HOUR)
    before, after = samples(site, vm)
    assert (before.host_name, after.host_name) == ("w1", "w2")
    assert after.cpu_s == pytest.approx(TEST_DRIVER_CPU_S) and after.net_in_bytes == after.rx_total


def test_exported_records_sum_to_the_vms_that_ran(site: Cloud, tmp_path: Path) -> None:
    atlas = lifecycle.create_farm(site, FarmRequest(name="atlas-farm", vo="atlas"))
    grid_identity.set_identity(site, "atlas-farm", global_user_name="/DC=org/DC=ivfarm/CN=atlas pilot")
    other = lifecycle.create_farm(site, FarmRequest(name="other"))
    running = run_vm(site, atlas.id, "m1.small")   # 1 vCPU, 512 MB: runs 3 h
    stopped = run_vm(site, atlas.id, "m1.medium")  # 2 vCPUs, 2048 MB: runs 2 h, then stopped 1 h
    ended = run_vm(site, other.id, "m1.tiny")      # 1 vCPU, 128 MB: terminated after 1.5 h
    accounting.collect(site, now=T0 + HOUR)
    provisioning.terminate(site, ended)
    with site.store.write() as session:
        session.get_one(Instance, ended).terminated_at = T0 + 90 * dt.timedelta(minutes=1)
    accounting.collect(site, now=T0 + 2 * HOUR)
    instances.stop(site, stopped)
    accounting.collect(site, now=T0 + 3 * HOUR)
    outdir = tmp_path / "outgoing"
    result = cli(site, tmp_path, "accounting", "export", "--format", "apel", "--outdir", str(outdir),
                 "--period", "2026-11")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"queued 3 record(s) in 1 message(s) under {outdir}"
    records = {r["VMUUID"]: r for r in read_queue(outdir)}
    assert set(records) == {running, stopped, ended}
    assert sum(int(r["WallDuration"]) for r in records.values()) == (3 + 2 + 1.5) * 3600
    assert sum(float(r["CpuCount"]) for r in records.values()) == 1 + 2 + 1
    assert sum(int(r["Memory"]) for r in records.values()) == 512 + 2048 + 128
    assert {k: r["Status"] for k, r in records.items()} == {running: "started", stopped: "suspended",
                                                            ended: "completed"}
    assert records[stopped]["SuspendDuration"] == "3600" and records[running]["SuspendDuration"] == "0"
    assert records[ended]["EndTime"] == str(int((T0 + 90 * dt.timedelta(minutes=1)).timestamp()))
    assert "EndTime" not in records[running] and "Benchmark" not in records[running]
    for record in records.values():
        assert record["SiteName"] == "IVFARM-TEST" and record["CloudComputeService"] == "ivfarm test cloud"
        assert record["StartTime"] == str(int(T0.timestamp())) and record["CloudType"] == "ivfarm"
        assert int(record["CpuDuration"]) == int(TEST_DRIVER_CPU_S)  # one boot each, counted once
        assert int(record["NetworkInbound"]) >= 0 and int(record["NetworkOutbound"]) >= 0
    assert records[running]["FQAN"] == "/atlas/Role=NULL/Capability=NULL"
    assert records[running]["GlobalUserName"] == "/DC=org/DC=ivfarm/CN=atlas pilot"
    assert "FQAN" not in records[ended] and records[ended]["LocalGroupId"] == "other"


def test_a_vm_across_a_month_end_has_one_cumulative_record_per_month(site: Cloud, tmp_path: Path) -> None:
    farm = lifecycle.create_farm(site, FarmRequest(name="lab"))
    start = dt.datetime(2026, 10, 31, 22, 0, tzinfo=dt.timezone.utc)
    vm = run_vm(site, farm.id, "m1.small", launched=start)
    accounting.collect(site, now=start + 4 * HOUR)
    outdir = tmp_path / "q"
    result = cli(site, tmp_path, "accounting", "export", "--outdir", str(outdir),
                 "--since", "2026-10-01", "--until", "2026-11-02")
    assert result.returncode == 0, result.stderr
    october, november = sorted(read_queue(outdir), key=lambda r: int(r["WallDuration"]))
    assert october["VMUUID"] == november["VMUUID"] == vm
    assert int(october["WallDuration"]) == 2 * 3600 - 1 and int(november["WallDuration"]) == 4 * 3600
    measured = dt.datetime.fromtimestamp(int(october["StartTime"]) + int(october["WallDuration"]), dt.timezone.utc)
    assert measured.month == 10  # APEL files the record under the month of StartTime + Suspend + Wall


def test_a_vm_of_a_deleted_farm_is_completed_at_its_last_sample(site: Cloud, tmp_path: Path) -> None:
    lifecycle.create_farm(site, FarmRequest(name="gone", vo="lhcb"))
    vm = run_vm(site, lifecycle.find_farm(site, "gone").id, "m1.small")
    accounting.collect(site, now=T0 + 2 * HOUR)
    lifecycle.delete_farm(site, "gone")
    outdir = tmp_path / "q"
    assert cli(site, tmp_path, "accounting", "export", "--outdir", str(outdir), "--period", "2026-11").returncode == 0
    [record] = read_queue(outdir)
    assert record["VMUUID"] == vm and record["Status"] == "completed" and record["WallDuration"] == "7200"
    assert record["EndTime"] == str(int((T0 + 2 * HOUR).timestamp())) and "FQAN" not in record


def test_farm_identity_from_the_cli(site: Cloud, tmp_path: Path) -> None:
    lifecycle.create_farm(site, FarmRequest(name="lab"))
    result = cli(site, tmp_path, "farm", "set", "lab", "--vo", "cms", "--fqan", "/cms/Role=pilot")
    assert result.returncode == 0, result.stderr
    assert "VO cms, FQAN /cms/Role=pilot" in result.stdout
    shown = cli(site, tmp_path, "farm", "show", "lab", "--output", "json")
    assert '"fqan": "/cms/Role=pilot"' in shown.stdout
    bad = cli(site, tmp_path, "farm", "set", "lab", "--fqan", "/atlas/Role=NULL")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "error: FQAN '/atlas/Role=NULL' does not belong to VO 'cms' (it starts with /cms)"]


@pytest.mark.parametrize("args,apel,message", [
    (["--format", "csv"], None, "error: unknown export format 'csv' (known: apel)"),
    (["--outdir", "{file}/queue"], None, "error: cannot write APEL messages to {file}/queue: Not a directory"),
    ([], {"cloud_type": "ivfarm"}, "error: accounting.apel.site_name is not set: APEL needs the site's GOCDB name"),
    (["--period", "November"], None, None),
])
def test_export_bad_input_is_one_line(site: Cloud, tmp_path: Path, args: list[str], apel: dict[str, object] | None,
                                      message: str | None) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    outdir = ["--outdir", str(tmp_path / "q")] if "--outdir" not in args else []
    result = cli(site, tmp_path, "accounting", "export", *outdir, *(a.format(file=a_file) for a in args), apel=apel)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    if message is None:
        assert "is not a month (YYYY-MM)" in result.stderr
    else:
        assert result.stderr.strip().splitlines() == [message.format(file=a_file)]
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").iterdir())


def test_a_rated_host_gives_its_vms_records_a_hepspec_benchmark(site: Cloud, tmp_path: Path) -> None:
    farm = lifecycle.create_farm(site, FarmRequest(name="rated"))
    hosts.set_hs06(site, "w1", 11.5)
    hosts.set_hs06(site, "w2", 11.5)
    vm = run_vm(site, farm.id, "m1.small")
    accounting.collect(site, now=T0 + HOUR)
    outdir = tmp_path / "outgoing"
    result = cli(site, tmp_path, "accounting", "export", "--format", "apel", "--outdir", str(outdir), "--period", "2026-11")
    assert result.returncode == 0, result.stderr
    [record] = [r for r in read_queue(outdir) if r["VMUUID"] == vm]
    assert (record["BenchmarkType"], float(record["Benchmark"])) == ("HEPSPEC", 11.5)
