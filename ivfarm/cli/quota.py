"""``ivfarm quota``: per-farm limits, usage and the cron job that enforces them."""
from __future__ import annotations

import json
import sys

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.farm import quota_options
from ivfarm.cli.output import emit_rows, output_option
from ivfarm.cloud import Cloud
from ivfarm.errors import IvfarmError
from ivfarm.services.farms.lifecycle import farm_by_name
from ivfarm.services.jobs import enforcement
from ivfarm.services.tenancy import quotas


@click.group()
def quota() -> None:
    """Farm quotas: instances, vCPUs, memory, disk, elastic IPs, volumes and volume GB."""


@quota.command("show")
@click.argument("farm_name", metavar="FARM")
@output_option
@pass_cloud
def show(cloud: Cloud, farm_name: str, output: str) -> None:
    """Show each quota's limit and the farm's usage."""
    with cloud.store.read() as session:
        rows = quotas.report(session, farm_by_name(session, farm_name))
    emit_rows(rows, ["resource", "limit", "used", "free"], output, title=f"farm {farm_name}")


@quota.command("set")
@click.argument("farm_name", metavar="FARM")
@quota_options
@pass_cloud
def set_(cloud: Cloud, farm_name: str, **limits: int | None) -> None:
    """Change the farm's limits (running instances over a lowered limit are left to `quota enforce`)."""
    given = quotas.validate_limits(limits)
    if not given:
        raise click.UsageError("give at least one of --instances, --vcpus, --memory-mb, --disk-gb, --addresses, "
                               "--volumes, --volume-gb")
    with cloud.store.write() as session:
        farm = cloud.store.lock_farm(session, farm_by_name(session, farm_name).id)
        quotas.set_limits(farm, given)
    click.echo(f"farm {farm_name}: " + ", ".join(f"{k} {v}" for k, v in given.items()))


@quota.command("enforce")
@click.option("--dry-run", is_flag=True, help="Report what would be done, change nothing.")
@click.option("--policy", type=click.Choice(["report", "stop", "terminate"]), default="report", show_default=True,
              help="What to do with the newest instances of a farm over its limits.")
@output_option
@pass_cloud
def enforce(cloud: Cloud, dry_run: bool, policy: str, output: str) -> None:
    """Recount usage from the hypervisors and bring farms back within quota (the cron job).

    Exits 0 when every farm is within quota, 1 when it acted or would act, 2 on error.
    """
    try:
        result = enforcement.enforce(cloud, policy=policy, dry_run=dry_run)
    except IvfarmError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if output == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for line in result.summary_lines():
            click.echo(line)
    sys.exit(result.exit_code)
