"""``ivfarm reconcile``: repair what crashes and drift left (the cron job)."""
from __future__ import annotations

import json
import sys

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import output_option
from ivfarm.cloud import Cloud
from ivfarm.errors import IvfarmError
from ivfarm.services.jobs.reconcile import reconcile as run_reconcile


@click.command()
@click.option("--dry-run", is_flag=True, help="Report what is wrong, change nothing.")
@output_option
@pass_cloud
def reconcile(cloud: Cloud, dry_run: bool, output: str) -> None:
    """Compare the store with every host; finish or roll back interrupted work, remove orphans.

    Exits 0 when nothing needed repair, 1 when something was (or would be) repaired, 2 on errors.
    """
    try:
        report = run_reconcile(cloud, dry_run=dry_run)
    except IvfarmError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if output == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(2 if report.errors else 1 if report.findings else 0)
