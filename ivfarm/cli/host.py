"""``ivfarm host``: register and manage hypervisors."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.durations import DURATION
from ivfarm.cli.output import emit_record, emit_rows, output_option
from ivfarm.cli.plots import capacity_plot
from ivfarm.cloud import Cloud
from ivfarm.services.compute import drains, hosts, migration

COLUMNS = ["name", "host_class", "enabled", "status", "uri", "used_cpus", "schedulable_cpus",
           "used_memory_mb", "schedulable_memory_mb", "used_disk_gb", "disk_gb", "instances"]


@click.group()
def host() -> None:
    """Register hypervisors and manage their state."""


@host.command("add")
@click.argument("name")
@click.option("--uri", required=True, help="libvirt URI, e.g. qemu:///system, qemu+ssh://hv1/system, test:///default.")
@click.option("--class", "host_class", type=click.Choice(["service", "worker"]), required=True,
              help="service: critical VMs on shared storage, live migration; worker: batch VMs on local disks.")
@click.option("--cpus", type=int, help="vCPUs to offer (default: read from libvirt).")
@click.option("--memory-mb", type=int, help="Memory to offer in MB (default: read from libvirt).")
@click.option("--disk-gb", type=int, help="Disk to offer in GB (default: hypervisor.disk_gb of the config).")
@click.option("--cpu-ratio", type=float, help="CPU overcommit for this host (default: from the config).")
@click.option("--memory-ratio", type=float, help="Memory overcommit for this host (default: from the config).")
@click.option("--ssh-target", help="user@host:port for the image cache (rsync over SSH); without it the host "
              "reads images from the repository's path.")
@click.option("--cache-dir", help="Image cache directory on the host (default: image_cache.dir of the config).")
@click.option("--migration-uri", help="libvirt URI other hosts use to reach this one (default: --uri).")
@click.option("--hs06-per-core", type=float, help="HEP-SPEC06 rating of one core (Machine Features hs06 = this x vCPUs).")
@click.option("--underlay-address", help="The host's IPv4 address where VXLAN farm segments end "
              "(network.segments: vxlan).")
@click.option("--netns", help="Network namespace of this machine that holds the host's links "
              "(the multi-host test site); network commands run inside it.")
@pass_cloud
def add(cloud: Cloud, name: str, uri: str, host_class: str, cpus: int | None, memory_mb: int | None,
        disk_gb: int | None, cpu_ratio: float | None, memory_ratio: float | None, ssh_target: str | None,
        cache_dir: str | None, migration_uri: str | None, hs06_per_core: float | None,
        underlay_address: str | None, netns: str | None) -> None:
    """Register hypervisor NAME reachable at --uri."""
    created = hosts.add_host(cloud, name, uri, host_class, cpus, memory_mb, disk_gb, cpu_ratio, memory_ratio,
                             ssh_target=ssh_target, cache_dir=cache_dir, migration_uri=migration_uri,
                             hs06_per_core=hs06_per_core, underlay_address=underlay_address, netns=netns)
    click.echo(f"host {created.name} added ({created.host_class}, {created.cpus} vCPUs, {created.memory_mb} MB)")


@host.command("list")
@output_option
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw each host's used and free vCPUs and memory into this PNG instead.")
@pass_cloud
def list_(cloud: Cloud, output: str, plot: Path | None) -> None:
    """List hypervisors with their capacity and usage."""
    if plot is not None:
        capacity_plot(hosts.list_hosts(cloud), plot)
        click.echo(f"capacity plot written to {plot}")
        return
    emit_rows([asdict(v) for v in hosts.list_hosts(cloud)], COLUMNS, output)


@host.command("show")
@click.argument("name")
@output_option
@pass_cloud
def show(cloud: Cloud, name: str, output: str) -> None:
    """Show one hypervisor."""
    emit_record(asdict(hosts.show_host(cloud, name)), output)


@host.command("enable")
@click.argument("name")
@pass_cloud
def enable(cloud: Cloud, name: str) -> None:
    """Let the scheduler place new instances on NAME again."""
    hosts.set_enabled(cloud, name, True)
    click.echo(f"host {name} enabled")


@host.command("disable")
@click.argument("name")
@pass_cloud
def disable(cloud: Cloud, name: str) -> None:
    """Stop placing new instances on NAME (running ones stay)."""
    hosts.set_enabled(cloud, name, False)
    click.echo(f"host {name} disabled")


@host.command("set")
@click.argument("name")
@click.option("--hs06-per-core", type=float, required=True,
              help="HEP-SPEC06 rating of one core (Machine Features hs06 = this x vCPUs).")
@pass_cloud
def set_(cloud: Cloud, name: str, hs06_per_core: float) -> None:
    """Change a property of hypervisor NAME (its VMs see the new rating at once)."""
    for warning in hosts.set_hs06(cloud, name, hs06_per_core):
        click.echo(f"warning: {warning} (ivfarm reconcile publishes it again)", err=True)
    click.echo(f"host {name}: {hs06_per_core:g} HS06 per core")


def _announced(view: drains.DrainView, what: str) -> None:
    for warning in view.warnings:
        click.echo(f"warning: {warning} (ivfarm reconcile publishes it again)", err=True)
    click.echo(f"{what}; shutdowntime {view.deadline:%Y-%m-%d %H:%M:%S} UTC "
               f"({int(view.deadline.timestamp())}), acted on by the first ivfarm reconcile after it")


@host.command("drain")
@click.argument("name")
@click.option("--grace", type=DURATION, metavar="DURATION",
              help="Announce the shutdown to the VMs (e.g. 30m, 2h, 1h30m) and move or end them once it passed.")
@click.option("--cancel", is_flag=True, help="Cancel the graceful drain in progress.")
@output_option
@pass_cloud
def drain(cloud: Cloud, name: str, grace: int | None, cancel: bool, output: str) -> None:
    """Disable NAME and move every instance off it: live for running service VMs, cold otherwise.

    With --grace, the VMs first read their shutdowntime (Machine/Job Features); once it has
    passed, ivfarm reconcile migrates service VMs and terminates or stops worker VMs
    (hosts.drain_worker_policy). Without it, exits 1 when an instance could not be moved (or was
    busy: run it again).
    """
    if cancel and grace is not None:
        raise click.UsageError("--grace and --cancel exclude each other")
    if cancel:
        _cancel(cloud, name)
        return
    if grace is not None:
        _announced(drains.drain_host(cloud, name, grace), f"host {name} disabled and draining")
        return

    def show(instance_id: str, outcome: migration.MigrationResult | str) -> None:
        if output == "table":
            text = (f"{instance_id} moved {outcome.mode} to {outcome.target} in {outcome.seconds:.1f} s"
                    if isinstance(outcome, migration.MigrationResult) else f"{instance_id} not moved: {outcome}")
            click.echo(text)

    report = migration.drain(cloud, name, show)
    if output == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"host {name} disabled; {len(report.moved)} moved, {len(report.failed)} failed, "
                   f"{len(report.skipped)} skipped")
    if report.failed or report.skipped:
        sys.exit(1)


def _cancel(cloud: Cloud, name: str) -> None:
    view = drains.cancel_host_drain(cloud, name)
    for warning in view.warnings:
        click.echo(f"warning: {warning} (ivfarm reconcile publishes it again)", err=True)
    click.echo(f"host {name}: drain cancelled, shutdowntime cleared")


@host.command("undrain")
@click.argument("name")
@pass_cloud
def undrain(cloud: Cloud, name: str) -> None:
    """Cancel the graceful drain of NAME (as host drain NAME --cancel)."""
    _cancel(cloud, name)


@host.command("remove")
@click.argument("name")
@pass_cloud
def remove(cloud: Cloud, name: str) -> None:
    """Unregister NAME (it must run no instance)."""
    hosts.remove_host(cloud, name)
    click.echo(f"host {name} removed")
