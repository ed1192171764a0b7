"""``ivfarm accounting``: record usage (cron) and report it per farm or instance."""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import asdict, fields

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_rows
from ivfarm.cloud import Cloud
from ivfarm.services.jobs import accounting as service
from ivfarm.services.jobs.accounting import UsageLine
from ivfarm.store.types import as_utc


@click.group()
def accounting() -> None:
    """Usage accounting: wall hours, vCPU-hours, memory, disk and elastic-IP hours."""


@accounting.command("collect")
@pass_cloud
def collect(cloud: Cloud) -> None:
    """Sample every instance and elastic IP from the hypervisors and record the usage since the last run."""
    result = service.collect(cloud)
    click.echo(f"recorded {result.records} interval(s): {result.instances} instance(s), {result.addresses} address(es)")
    for host in result.unreachable_hosts:
        click.echo(f"host {host} unreachable: its instances were not sampled", err=True)


def _date(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from exc
    return as_utc(moment)


@accounting.command("report")
@click.option("--farm", help="Only this farm.")
@click.option("--since", help="Start of the window (ISO date or time, UTC).")
@click.option("--until", help="End of the window (ISO date or time, UTC).")
@click.option("--per-instance", is_flag=True, help="One line per instance instead of per farm.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@pass_cloud
def report(cloud: Cloud, farm: str | None, since: str | None, until: str | None, per_instance: bool, fmt: str) -> None:
    """Sum recorded usage per farm (or instance) over a window."""
    lines = service.report(cloud, farm, _date(since), _date(until), per_instance)
    columns = [f.name for f in fields(UsageLine)]
    rows = [asdict(line) for line in lines]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buffer.getvalue(), nl=False)
    else:
        emit_rows(rows, columns, fmt)
