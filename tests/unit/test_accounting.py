"""Accounting with known intervals: collect samples from the hypervisor, report sums and clips them."""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.jobs import accounting
from ivfarm.store.models import Address, Instance

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def accounted(cloud: Cloud, fake_host: Callable[..., str], base_image) -> tuple[Cloud, str, str]:  # type: ignore[no-untyped-def]
    hosts.add_host(cloud, "w", fake_host("w"), "worker")
    farm = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    [medium] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.medium", farm_id=farm.id))
    provisioning.provision(cloud, medium.id)
    with cloud.store.write() as session:
        session.get(Instance, medium.id).launched_at = T0
        for address in session.query(Address).filter_by(farm_id=farm.id, role="elastic"):
            address.allocated_at = T0
    return cloud, medium.id, farm.name


def test_known_intervals(accounted) -> None:  # type: ignore[no-untyped-def]
    cloud, instance_id, farm = accounted
    assert accounting.collect(cloud, now=T0 + 2 * HOUR).records == 2  # the instance and the elastic IP
    instances.stop(cloud, instance_id)
    accounting.collect(cloud, now=T0 + 3 * HOUR)  # the third hour ends stopped: disk only
    instances.start(cloud, instance_id)
    accounting.collect(cloud, now=T0 + 4 * HOUR)
    [line] = accounting.report(cloud, farm=farm)
    disk = 21  # m1.medium: the image's 1 GB root disk plus 20 GB ephemeral
    assert line.wall_hours == 3.0 and line.vcpu_hours == 6.0 and line.memory_gb_hours == 6.0
    assert line.disk_gb_hours == 4.0 * disk and line.eip_hours == 4.0 and line.instances == 1
    [window] = accounting.report(cloud, since=T0 + HOUR, until=T0 + 2 * HOUR + 30 * dt.timedelta(minutes=1))
    assert window.wall_hours == 1.0 and window.eip_hours == 1.5
    [eip, per_instance] = accounting.report(cloud, per_instance=True)  # sorted: addresses first
    assert per_instance.resource == instance_id and eip.eip_hours == 4.0


def test_terminated_instances_are_closed_at_termination(accounted) -> None:  # type: ignore[no-untyped-def]
    cloud, instance_id, farm = accounted
    accounting.collect(cloud, now=T0 + HOUR)
    provisioning.terminate(cloud, instance_id)
    with cloud.store.write() as session:
        session.get(Instance, instance_id).terminated_at = T0 + 90 * dt.timedelta(minutes=1)
    accounting.collect(cloud, now=T0 + 5 * HOUR)
    accounting.collect(cloud, now=T0 + 6 * HOUR)  # nothing more for the instance
    [line] = accounting.report(cloud, farm=farm)
    assert line.wall_hours == 1.5 and line.eip_hours == 6.0


def test_report_formats(accounted) -> None:  # type: ignore[no-untyped-def]
    from ivfarm.cli.main import cli

    cloud, _, farm = accounted
    accounting.collect(cloud, now=T0 + HOUR)
    config = cloud.config.state_dir / "c.yaml"
    config.write_text(f"state_dir: {cloud.config.state_dir}\nvrouter: {{backend: none}}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "accounting", "report", "--format", "csv"])
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(io.StringIO(result.output)))
    assert row["farm"] == farm and float(row["vcpu_hours"]) == 2.0
    bad = CliRunner().invoke(cli, ["--config", str(config), "accounting", "report", "--since", "yesterday"])
    assert bad.exit_code != 0 and "not an ISO date" in bad.output
