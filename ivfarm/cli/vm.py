"""``ivfarm vm``: instances launched and managed by the sysadmin."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from sqlalchemy import func, select

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.durations import DURATION
from ivfarm.cli.output import emit_record, emit_rows, output_option
from ivfarm.cloud import Cloud
from ivfarm.services.compute import drains, instances, migration, provisioning
from ivfarm.services.farms.lifecycle import find_farm
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store import jobs
from ivfarm.store.models import Instance, Job

COLUMNS = ["id", "name", "state", "farm", "host", "host_class", "flavor", "image", "ip"]


def _record(instance: Instance) -> dict[str, object]:
    return {
        "id": instance.id, "name": instance.name, "state": instance.state,
        "farm": instance.farm.name if instance.farm else None,
        "host": instance.host.name if instance.host else None, "host_class": instance.host_class,
        "flavor": instance.flavor_name, "image": instance.image_id, "ip": instance.ip,
    }


def _resolve(cloud: Cloud, ref: str) -> str:
    with cloud.store.read() as session:
        return instances.find_instance(session, ref).id


@click.group()
def vm() -> None:
    """Launch and manage instances."""


@vm.command("run")
@click.option("--image", "image_ref", required=True, help="Machine image id or name.")
@click.option("--flavor", "flavor_name", required=True, help="Flavor, e.g. m1.small.")
@click.option("--class", "host_class", type=click.Choice(["service", "worker"]), default="worker", show_default=True)
@click.option("--name", help="Instance name (default: its id).")
@click.option("--farm", "farm_name", help="Put the instance in this farm's network.")
@click.option("--count", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--user-data", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="User-data file.")
@click.option("--key-name", help="Key pair of the farm to inject.")
@click.option("--public-nic", is_flag=True, help="Add a NIC on the public segment (service class only).")
@click.option("--restart-policy", type=click.Choice(["none", "always"]), default="none", show_default=True,
              help="What reconcile does when the VM dies.")
@click.option("--no-wait", is_flag=True, help="Return once queued (pending), without waiting for them to run.")
@pass_cloud
def run(cloud: Cloud, image_ref: str, flavor_name: str, host_class: str, name: str | None, farm_name: str | None,
        count: int, user_data: Path | None, key_name: str | None, public_nic: bool, restart_policy: str,
        no_wait: bool) -> None:
    """Launch instances (queued for a provisioner) and wait until they run, carrying out queued jobs meanwhile."""
    farm_id = find_farm(cloud, farm_name).id if farm_name else None
    request = instances.LaunchRequest(
        image=image_ref, flavor=flavor_name, host_class=host_class, count=count, name=name, farm_id=farm_id,
        key_name=key_name, user_data=user_data.read_bytes() if user_data else None, public_nic=public_nic,
        restart_policy=restart_policy,
    )
    ids = [instance.id for instance in instances.launch(cloud, request)]
    if not no_wait:
        _wait(cloud, ids)
    failed = 0
    with cloud.store.read() as session:
        for instance_id in ids:
            instance = instances.get_instance(session, instance_id)
            if instance.state in ("terminated", "shutting-down"):
                failed += 1
                click.echo(f"error: {instance.id} failed: {instance.state_reason}", err=True)
                continue
            click.echo(f"{instance.id} {instance.name} {instance.state}" + (f" ip {instance.ip}" if instance.ip else ""))
    if failed:
        sys.exit(1)


def _wait(cloud: Cloud, ids: list[str]) -> None:
    """Run jobs here until none of ``ids`` is pending, with a progress line on stderr."""
    def done() -> bool:
        with cloud.store.read() as session:
            waiting = session.scalar(select(func.count()).select_from(Instance).where(
                Instance.id.in_(ids), Instance.state == "pending")) or 0
        click.echo(f"\r{len(ids) - waiting}/{len(ids)} launched", nl=False, err=True)
        return waiting == 0

    Provisioner(cloud, 1).run_until(done)
    click.echo("", err=True)


@vm.command("list")
@click.option("--farm", "farm_name", help="Only this farm's instances.")
@click.option("--all", "show_all", is_flag=True, help="Include terminated instances.")
@output_option
@pass_cloud
def list_(cloud: Cloud, farm_name: str | None, show_all: bool, output: str) -> None:
    """List instances."""
    with cloud.store.read() as session:
        query = select(Instance).order_by(Instance.created_at, Instance.id)
        if farm_name:
            query = query.where(Instance.farm_id == find_farm(cloud, farm_name).id)
        if not show_all:
            query = query.where(Instance.state != "terminated")
        rows = [_record(i) for i in session.scalars(query)]
    emit_rows(rows, COLUMNS, output)


@vm.command("show")
@click.argument("ref", metavar="INSTANCE")
@output_option
@pass_cloud
def show(cloud: Cloud, ref: str, output: str) -> None:
    """Show one instance (by id or name)."""
    with cloud.store.read() as session:
        instance = instances.find_instance(session, ref)
        record = _record(instance)
        record.update(mac=instance.mac, vcpus=instance.vcpus, memory_mb=instance.memory_mb, disk_gb=instance.disk_gb,
                      key_name=instance.key_name, state_reason=instance.state_reason,
                      domain=instances.domain_name(instance.id), created_at=instance.created_at,
                      launched_at=instance.launched_at, terminated_at=instance.terminated_at)
    emit_record(record, output)


NO_WAIT = click.option("--no-wait", is_flag=True, help="Return once queued, without waiting for a provisioner.")


def _carry_out(cloud: Cloud, instance_id: str, kind: str, no_wait: bool, done_message: str) -> None:
    """Wait for the job of ``kind`` just queued for the instance (running queued jobs here meanwhile,
    with a progress line on stderr), then print ``done_message``; one error line and exit 1 if it failed."""
    if no_wait:
        with cloud.store.read() as session:
            click.echo(f"{instance_id} {instances.get_instance(session, instance_id).state}")
        return
    with cloud.store.read() as session:
        job_id = session.scalar(select(func.max(Job.id)).where(Job.instance_id == instance_id, Job.kind == kind))
        farm_id = instances.get_instance(session, instance_id).farm_id
    began = time.monotonic()

    def done() -> bool:
        with cloud.store.read() as session:
            job = session.get(Job, job_id)
            state = instances.get_instance(session, instance_id).state
            syncing = session.scalar(select(func.count()).select_from(Job).where(  # the router sync it queued
                Job.kind == jobs.ROUTER_SYNC, Job.farm_id == farm_id, Job.state.in_(("queued", "running")))) or 0
        click.echo(f"\r{instance_id} {state} ({time.monotonic() - began:.0f} s)", nl=False, err=True)
        return job is None or (job.state in ("done", "failed") and not (farm_id is not None and syncing))

    Provisioner(cloud, 1).run_until(done)
    click.echo("", err=True)
    with cloud.store.read() as session:
        job = session.get(Job, job_id)
        instance = instances.get_instance(session, instance_id)
        if job is not None and job.state == "failed":
            click.echo(f"error: {kind} of {instance_id} failed: {job.error} (it is {instance.state})", err=True)
            sys.exit(1)
    click.echo(f"{instance_id} {done_message}")


@vm.command("stop")
@click.argument("ref", metavar="INSTANCE")
@click.option("--force", is_flag=True, help="Power off at once instead of an ACPI shutdown.")
@NO_WAIT
@pass_cloud
def stop(cloud: Cloud, ref: str, force: bool, no_wait: bool) -> None:
    """Shut an instance down (its disk is kept); queued for a provisioner, waited for unless --no-wait."""
    instance_id = _resolve(cloud, ref)
    instances.begin_stop(cloud, instance_id, force=force)
    _carry_out(cloud, instance_id, "stop", no_wait, "stopped")


@vm.command("start")
@click.argument("ref", metavar="INSTANCE")
@NO_WAIT
@pass_cloud
def start(cloud: Cloud, ref: str, no_wait: bool) -> None:
    """Start a stopped instance; queued for a provisioner, waited for unless --no-wait."""
    instance_id = _resolve(cloud, ref)
    instances.begin_start(cloud, instance_id, queue=True)
    _carry_out(cloud, instance_id, "start", no_wait, "running")


@vm.command("reboot")
@click.argument("ref", metavar="INSTANCE")
@NO_WAIT
@pass_cloud
def reboot(cloud: Cloud, ref: str, no_wait: bool) -> None:
    """Reboot a running instance; queued for a provisioner, waited for unless --no-wait."""
    instance_id = _resolve(cloud, ref)
    instances.begin_reboot(cloud, instance_id, queue=True)
    _carry_out(cloud, instance_id, "reboot", no_wait, "rebooting")


@vm.command("terminate")
@click.argument("ref", metavar="INSTANCE")
@click.option("--grace", type=DURATION, metavar="DURATION",
              help="Announce the shutdown to the VM (e.g. 30m, 2h) and terminate it once it passed.")
@click.option("--cancel", is_flag=True, help="Take back a termination announced with --grace.")
@NO_WAIT
@pass_cloud
def terminate(cloud: Cloud, ref: str, grace: int | None, cancel: bool, no_wait: bool) -> None:
    """Destroy an instance with its disks, seed and console log; queued for a provisioner, waited for
    (with its farm's router sync) unless --no-wait.

    With --grace the VM first reads its shutdowntime (Machine/Job Features); the first ivfarm
    reconcile after it terminates the VM.
    """
    if cancel and grace is not None:
        raise click.UsageError("--grace and --cancel exclude each other")
    instance_id = _resolve(cloud, ref)
    if cancel or grace is not None:
        view = (drains.cancel_instance_drain(cloud, instance_id) if cancel
                else drains.drain_instance(cloud, instance_id, grace or 0))
        for warning in view.warnings:
            click.echo(f"warning: {warning} (ivfarm reconcile publishes it again)", err=True)
        click.echo(f"{instance_id}: termination cancelled, shutdowntime cleared" if cancel else
                   f"{instance_id} terminates after {view.deadline:%Y-%m-%d %H:%M:%S} UTC "
                   f"(shutdowntime {int(view.deadline.timestamp())})")
        return
    if provisioning.begin_terminate(cloud, instance_id, queue=True) == "terminated":
        click.echo(f"{instance_id} terminated")
        return
    _carry_out(cloud, instance_id, "terminate", no_wait, "terminated")


@vm.command("migrate")
@click.argument("ref", metavar="INSTANCE")
@click.option("--to", "target", metavar="HOST", help="Target host (default: the scheduler's choice).")
@pass_cloud
def migrate(cloud: Cloud, ref: str, target: str | None) -> None:
    """Move an instance to another host of its class: live for running service VMs, cold otherwise."""
    result = migration.migrate(cloud, _resolve(cloud, ref), target)
    click.echo(f"{result.instance_id} migrated {result.mode} from {result.source} to {result.target} "
               f"in {result.seconds:.1f} s ({result.state})")


@vm.command("console")
@click.argument("ref", metavar="INSTANCE")
@click.option("--tail", type=int, default=0, help="Only the last N lines.")
@pass_cloud
def console(cloud: Cloud, ref: str, tail: int) -> None:
    """Print the instance's serial console log."""
    text = instances.console_output(cloud, _resolve(cloud, ref)).decode("utf-8", "replace")
    lines = text.splitlines()
    click.echo("\n".join(lines[-tail:] if tail else lines))
