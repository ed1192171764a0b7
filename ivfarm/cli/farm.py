"""``ivfarm farm``: create, inspect and delete virtual farms."""
from __future__ import annotations

import json

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_record, emit_rows, output_option
from ivfarm.cloud import Cloud
from ivfarm.services.farms import grid_identity, lifecycle

COLUMNS = ["name", "owner", "status", "cidr", "vlan", "router", "router_ip", "elastic_ips", "instances"]


def quota_options(func):  # type: ignore[no-untyped-def]
    """The quota flags shared by ``farm create`` and ``quota set``."""
    for flag, help_text in reversed([
        ("--instances", "Instances."), ("--vcpus", "vCPUs."), ("--memory-mb", "Memory in MB."),
        ("--disk-gb", "Disk in GB."), ("--addresses", "Elastic IPs."), ("--volumes", "Volumes."),
        ("--volume-gb", "Volume storage in GB."),
    ]):
        func = click.option(flag, type=click.IntRange(min=0), help=f"Quota: {help_text}")(func)
    return func


@click.group()
def farm() -> None:
    """Virtual farms: sandboxes with their own network, router, elastic IP and quotas."""


def identity_options(func):  # type: ignore[no-untyped-def]
    """The grid identity flags shared by ``farm create`` and ``farm set``."""
    for flag, dest, help_text in reversed([
        ("--vo", "vo", "VO the farm's VMs are accounted to (APEL); '' clears it."),
        ("--fqan", "fqan", "VOMS FQAN, e.g. /atlas/Role=NULL (default with --vo: /VO/Role=NULL/Capability=NULL)."),
        ("--global-user", "global_user_name", "Grid user DN accounted as GlobalUserName."),
    ]):
        func = click.option(flag, dest, help=help_text)(func)
    return func


@farm.command("create")
@click.argument("name")
@click.option("--owner", default="", help="Who the farm is for (free text).")
@click.option("--cidr", help="Private network, a /24 (or larger, up to a /16) not used by another farm.")
@click.option("--access-key", help="Import EC2 credentials of a tenant moved from another cloud.")
@click.option("--secret-key", help="Secret key that goes with --access-key.")
@click.option("--router", "router_backend", type=click.Choice(["netns", "openwrt", "none"]),
              help="Virtual router backend (default: vrouter.backend of the config).")
@identity_options
@quota_options
@pass_cloud
def create(cloud: Cloud, name: str, owner: str, cidr: str | None, access_key: str | None, secret_key: str | None,
           router_backend: str | None, vo: str | None, fqan: str | None, global_user_name: str | None,
           **limits: int | None) -> None:
    """Create farm NAME with network, router, public and elastic IP, quotas and EC2 credentials."""
    created = lifecycle.create_farm(cloud, lifecycle.FarmRequest(
        name=name, owner=owner, cidr=cidr, access_key=access_key, secret_key=secret_key, quotas=limits,
        router_backend=router_backend, vo=vo, fqan=fqan, global_user_name=global_user_name))
    summary = lifecycle.farm_summary(cloud, created)
    click.echo(f"farm {created.name}: network {created.cidr}, router {created.router_ip}, "
               f"elastic IP {summary['elastic_ips']}, access key {created.access_key}")
    click.echo(f"  credentials: ivfarm farm credentials {created.name} --output json")


@farm.command("set")
@click.argument("name")
@identity_options
@pass_cloud
def set_(cloud: Cloud, name: str, vo: str | None, fqan: str | None, global_user_name: str | None) -> None:
    """Change farm NAME's grid identity (what accounting charges its VMs to)."""
    if vo is None and fqan is None and global_user_name is None:
        raise click.UsageError("nothing to change: give --vo, --fqan or --global-user")
    identity = grid_identity.set_identity(cloud, name, vo, fqan, global_user_name)
    click.echo(f"farm {name}: VO {identity.vo or '-'}, FQAN {identity.fqan or '-'}, "
               f"global user {identity.global_user_name or '-'}")


@farm.command("list")
@output_option
@pass_cloud
def list_(cloud: Cloud, output: str) -> None:
    """List farms."""
    emit_rows([lifecycle.farm_summary(cloud, f) for f in lifecycle.list_farms(cloud)], COLUMNS, output)


@farm.command("show")
@click.argument("name")
@output_option
@pass_cloud
def show(cloud: Cloud, name: str, output: str) -> None:
    """Show one farm (without its secret key)."""
    emit_record(lifecycle.farm_summary(cloud, lifecycle.find_farm(cloud, name)), output)


@farm.command("credentials")
@click.argument("name")
@output_option
@pass_cloud
def credentials(cloud: Cloud, name: str, output: str) -> None:
    """Print the farm's EC2 credentials (hand them to the tenant over a safe channel)."""
    found = lifecycle.find_farm(cloud, name)
    if output == "json":
        click.echo(json.dumps({"access_key": found.access_key, "secret_key": found.secret_key}))
    else:
        click.echo(f"AWS_ACCESS_KEY_ID={found.access_key}\nAWS_SECRET_ACCESS_KEY={found.secret_key}")


@farm.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_cloud
def delete(cloud: Cloud, name: str, yes: bool) -> None:
    """Delete farm NAME with every VM, disk, lease, rule, namespace, bridge and record."""
    lifecycle.find_farm(cloud, name)
    if not yes:
        click.confirm(f"delete farm {name} and everything in it?", abort=True)
    removed = lifecycle.delete_farm(cloud, name)
    click.echo(f"farm {name} deleted ({removed} instance(s) terminated)")
