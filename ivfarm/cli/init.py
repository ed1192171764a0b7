"""``ivfarm init``: create the state directory and store (or upgrade its schema), load the flavor catalog."""
from __future__ import annotations

import click

from ivfarm.cli.context_obj import AppContext
from ivfarm.services.compute.flavors import sync_catalog


@click.command()
@click.pass_obj
def init(app: AppContext) -> None:
    """Create the state store or upgrade its schema (idempotent), and load the m1.* flavor catalog."""
    cloud = app.cloud(require_store=False)
    cloud.prepare_state_dir()
    click.echo(cloud.store.upgrade_schema().describe())
    count = sync_catalog(cloud)
    click.echo(f"state store ready at {cloud.store.url} ({count} flavors); state directory {cloud.config.state_dir}")
