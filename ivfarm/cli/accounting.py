"""``ivfarm accounting``: record usage (cron) and report it per farm or instance."""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import asdict, fields
from pathlib import Path

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_rows
from ivfarm.cli.plots import usage_plot
from ivfarm.cloud import Cloud
from ivfarm.services.jobs import accounting as service
from ivfarm.services.jobs import apel
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
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw vCPU-hours and memory GB-hours per farm over time into this PNG instead.")
@pass_cloud
def report(cloud: Cloud, farm: str | None, since: str | None, until: str | None, per_instance: bool, fmt: str,
           plot: Path | None) -> None:
    """Sum recorded usage per farm (or instance) over a window."""
    if plot is not None:
        usage_plot(service.series(cloud, farm, _date(since), _date(until)), plot)
        click.echo(f"usage plot written to {plot}")
        return
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


def _period(value: str) -> tuple[dt.datetime, dt.datetime]:
    try:
        start = dt.datetime.strptime(value, "%Y-%m").replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a month (YYYY-MM)") from exc
    return start, (start + dt.timedelta(days=32)).replace(day=1)


@accounting.command("export")
@click.option("--format", "fmt", default="apel", show_default=True, help="Record format: apel (cloud message v0.4).")
@click.option("--outdir", help="Outgoing dirq queue of ssmsend (default: accounting.apel.outgoing_dir).")
@click.option("--since", help="Start of the window (ISO date or time, UTC; default: start of last month).")
@click.option("--until", help="End of the window (ISO date or time, UTC; default: now).")
@click.option("--period", help="One month, YYYY-MM (instead of --since/--until).")
@pass_cloud
def export(cloud: Cloud, fmt: str, outdir: str | None, since: str | None, until: str | None,
           period: str | None) -> None:
    """Queue one cumulative usage record per VM and month for APEL's ssmsend."""
    if period and (since or until):
        raise click.BadParameter("--period replaces --since/--until", param_hint="--period")
    start, end = _period(period) if period else (_date(since), _date(until))
    result = apel.export(cloud, fmt, outdir, start, end)
    click.echo(f"queued {result.records} record(s) in {len(result.messages)} message(s) under {result.outdir}")
