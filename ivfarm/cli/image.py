"""``ivfarm image``: the image repository (machine images, kernels, ramdisks)."""
from __future__ import annotations

from pathlib import Path

import click

from ivfarm.cli.context_obj import pass_cloud
from ivfarm.cli.output import emit_record, emit_rows, output_option
from ivfarm.services import images
from ivfarm.services.cloud import Cloud
from ivfarm.store.models import Image

COLUMNS = ["id", "name", "kind", "disk_format", "size_bytes", "public", "kernel_id", "ramdisk_id", "sha256"]


def _record(image: Image, full: bool = False) -> dict[str, object]:
    keys = COLUMNS + (["virtual_size_bytes", "path", "cmdline", "description", "created_at"] if full else [])
    return {key: getattr(image, key) for key in keys}


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
    created = images.add_image(cloud, name, file, kind, disk_format, public, ami_id, kernel, ramdisk, cmdline, description)
    click.echo(f"{created.id} {created.name} ({created.kind}, {created.disk_format}, sha256 {created.sha256[:12]}…)")


@image.command("list")
@output_option
@pass_cloud
def list_(cloud: Cloud, output: str) -> None:
    """List images."""
    emit_rows([_record(i) for i in images.list_images(cloud)], COLUMNS, output)


@image.command("show")
@click.argument("image_ref", metavar="IMAGE")
@output_option
@pass_cloud
def show(cloud: Cloud, image_ref: str, output: str) -> None:
    """Show one image (by id or name)."""
    emit_record(_record(images.show_image(cloud, image_ref), full=True), output)


@image.command("publish")
@click.argument("image_ref", metavar="IMAGE")
@pass_cloud
def publish(cloud: Cloud, image_ref: str) -> None:
    """Make IMAGE visible to every farm."""
    images.set_public(cloud, image_ref, True)
    click.echo(f"image {image_ref} is public")


@image.command("unpublish")
@click.argument("image_ref", metavar="IMAGE")
@pass_cloud
def unpublish(cloud: Cloud, image_ref: str) -> None:
    """Hide IMAGE from farms (running instances keep running)."""
    images.set_public(cloud, image_ref, False)
    click.echo(f"image {image_ref} is private")


@image.command("remove")
@click.argument("image_ref", metavar="IMAGE")
@pass_cloud
def remove(cloud: Cloud, image_ref: str) -> None:
    """Remove IMAGE (refused while an instance uses it)."""
    images.remove_image(cloud, image_ref)
    click.echo(f"image {image_ref} removed")
