"""``ivfarm image``: the image repository (machine images, kernels, ramdisks)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_record, emit_rows, output_option
from ivfarm.cli.sync_progress import SyncProgress
from ivfarm.cloud import Cloud
from ivfarm.services.images import catalog, image_sync
from ivfarm.store.models import Image

COLUMNS = ["id", "name", "owner", "state", "kind", "disk_format", "size_bytes", "public", "kernel_id", "ramdisk_id",
           "sha256"]
SITE_OWNER = "site"  # images the sysadmin registered; farm images name their farm
SYNC_COLUMNS = ["host", "status", "source", "round", "seconds", "attempts", "error"]


def _record(image: Image, owners: dict[int, str], shared: list[int] | None = None) -> dict[str, object]:
    """One image as the CLI shows it; with ``shared`` (the farms it is shared with) the full record."""
    keys = COLUMNS + (["virtual_size_bytes", "path", "cmdline", "description", "source_instance_id", "state_reason",
                       "created_at"] if shared is not None else [])
    record: dict[str, object] = {key: getattr(image, key) for key in keys if key != "owner"}
    record["owner"] = owners.get(image.owner_farm_id, SITE_OWNER) if image.owner_farm_id is not None else SITE_OWNER
    if shared is not None:
        record["shared_with"] = ",".join(owners.get(f, str(f)) for f in shared)
    return {key: record[key] for key in [*keys, *(["shared_with"] if shared is not None else [])]}


@click.group()
def image() -> None:
    """Register and publish images."""


@image.command("add")
@click.argument("name")
@click.option("--file", "file", type=click.Path(path_type=Path), required=True, help="Image file to copy in.")
@click.option("--kind", type=click.Choice(["machine", "kernel", "ramdisk"]), default="machine", show_default=True,
              help="machine (ami), kernel (aki) or ramdisk (ari) for direct kernel boot.")
@click.option("--format", "disk_format", type=click.Choice(["raw", "qcow2"]), help="Expected disk format (checked).")
@click.option("--public/--private", default=False, show_default=True, help="Farms launch public images only.")
@click.option("--ami-id", help="Keep an id users know from the cloud the image comes from (ami-/aki-/ari-).")
@click.option("--kernel", help="Kernel image (id or name) a machine image boots with.")
@click.option("--ramdisk", help="Ramdisk image (id or name) a machine image boots with.")
@click.option("--cmdline", default="", help="Kernel command line for direct kernel boot.")
@click.option("--description", default="")
@pass_cloud
def add(cloud: Cloud, name: str, file: Path, kind: str, disk_format: str | None, public: bool, ami_id: str | None,
        kernel: str | None, ramdisk: str | None, cmdline: str, description: str) -> None:
    """Copy --file into the repository as image NAME (its SHA-256 is recorded)."""
    created = catalog.add_image(cloud, name, file, kind, disk_format, public, ami_id, kernel, ramdisk, cmdline, description)
    click.echo(f"{created.id} {created.name} ({created.kind}, {created.disk_format}, sha256 {created.sha256[:12]}…)")


@image.command("list")
@output_option
@pass_cloud
def list_(cloud: Cloud, output: str) -> None:
    """List images."""
    owners = catalog.farm_names(cloud)
    emit_rows([_record(i, owners) for i in catalog.list_images(cloud)], COLUMNS, output)


@image.command("show")
@click.argument("image_ref", metavar="IMAGE")
@output_option
@pass_cloud
def show(cloud: Cloud, image_ref: str, output: str) -> None:
    """Show one image (by id or name)."""
    shown = catalog.show_image(cloud, image_ref)
    emit_record(_record(shown, catalog.farm_names(cloud), catalog.farms_shared_with(cloud, shown.id)), output)


@image.command("publish")
@click.argument("image_ref", metavar="IMAGE")
@pass_cloud
def publish(cloud: Cloud, image_ref: str) -> None:
    """Make IMAGE (a site image, or a farm's image) visible to and launchable by every farm."""
    catalog.set_public(cloud, image_ref, True)
    click.echo(f"image {image_ref} is public")


@image.command("unpublish")
@click.argument("image_ref", metavar="IMAGE")
@pass_cloud
def unpublish(cloud: Cloud, image_ref: str) -> None:
    """Hide IMAGE from farms (running instances keep running)."""
    catalog.set_public(cloud, image_ref, False)
    click.echo(f"image {image_ref} is private")


@image.command("sync")
@click.argument("image_ref", metavar="IMAGE")
@click.option("--hosts", "host_names", multiple=True, metavar="HOST[,HOST...]",
              help="Hosts to fill (default: every enabled worker host with an SSH endpoint).")
@click.option("--fanout", type=click.IntRange(1, 64), help="Copies each host serves per round [default: image_cache.fanout].")
@output_option
@pass_cloud
def sync(cloud: Cloud, image_ref: str, host_names: tuple[str, ...], fanout: int | None, output: str) -> None:
    """Bring IMAGE into the cache of worker hosts in waves: every host with a verified copy seeds the next.

    Existing copies are checksummed on their host; missing or corrupt ones are copied (rsync over
    SSH) and verified there; a failed copy is retried from another source. Exits 1 if a host failed.
    """
    names = [n for item in host_names for n in item.split(",") if n] or None
    if output == "json":
        report = image_sync.sync_image(cloud, image_ref, names, fanout)
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        with SyncProgress() as progress:
            report = image_sync.sync_image(cloud, image_ref, names, fanout, progress.event)
        emit_rows([vars(h) for h in report.hosts], SYNC_COLUMNS, output,
                  title=f"{report.image}: {len(report.hosts)} host(s), {report.rounds} round(s), {report.seconds:.1f} s")
    if any(h.status == "failed" for h in report.hosts):
        sys.exit(1)


@image.command("remove")
@click.argument("image_ref", metavar="IMAGE")
@pass_cloud
def remove(cloud: Cloud, image_ref: str) -> None:
    """Remove IMAGE (refused while an instance uses it)."""
    catalog.remove_image(cloud, image_ref)
    click.echo(f"image {image_ref} removed")
