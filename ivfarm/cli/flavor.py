"""``ivfarm flavor``: the m1.* catalog and site flavors."""
from __future__ import annotations

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_record, emit_rows, output_option
from ivfarm.cloud import Cloud
from ivfarm.services.compute import flavors
from ivfarm.store.models import Flavor

COLUMNS = ["name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "builtin", "description"]


def _record(flavor: Flavor) -> dict[str, object]:
    return {column: getattr(flavor, column) for column in COLUMNS}


@click.group()
def flavor() -> None:
    """Instance sizes (m1.* and site additions)."""


@flavor.command("list")
@output_option
@pass_cloud
def list_(cloud: Cloud, output: str) -> None:
    """List flavors."""
    emit_rows([_record(f) for f in flavors.list_flavors(cloud)], COLUMNS, output)


@flavor.command("show")
@click.argument("name")
@output_option
@pass_cloud
def show(cloud: Cloud, name: str, output: str) -> None:
    """Show one flavor."""
    emit_record(_record(flavors.get_flavor(cloud, name)), output)


@flavor.command("add")
@click.argument("name")
@click.option("--vcpus", type=int, required=True)
@click.option("--memory-mb", type=int, required=True)
@click.option("--root-gb", type=int, default=0, show_default=True, help="Root disk size; 0 means the image's size.")
@click.option("--ephemeral-gb", type=int, default=0, show_default=True, help="Blank second disk.")
@click.option("--description", default="")
@pass_cloud
def add(cloud: Cloud, name: str, vcpus: int, memory_mb: int, root_gb: int, ephemeral_gb: int, description: str) -> None:
    """Add a site flavor NAME."""
    flavors.add_flavor(cloud, name, vcpus, memory_mb, root_gb, ephemeral_gb, description)
    click.echo(f"flavor {name} added")


@flavor.command("remove")
@click.argument("name")
@pass_cloud
def remove(cloud: Cloud, name: str) -> None:
    """Remove a site flavor no instance uses."""
    flavors.remove_flavor(cloud, name)
    click.echo(f"flavor {name} removed")
