"""The image repository: machine images (ami), kernels (aki) and ramdisks (ari)."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from fileops.atomic import atomic_open
from ivfarm import ids
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, NotFound
from ivfarm.services.images.sharing import shared_with, visible_to
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import LIVE_STATES, Farm, Image, Instance, LaunchPermission

KINDS = {"machine": "image", "kernel": "kernel", "ramdisk": "ramdisk"}
FORMATS = ("raw", "qcow2")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_()/ ]{0,127}$")
_CHUNK = 4 * 1024 * 1024


def _external_file(info: dict[str, Any]) -> str | None:
    """The host file a qcow2 image would make QEMU open besides itself: a backing or data file."""
    backing = info.get("backing-filename")
    if backing:
        return f"a backing file ({backing})"
    data_file = (info.get("format-specific") or {}).get("data", {}).get("data-file")
    return f"an external data file ({data_file})" if data_file else None


def inspect_disk(path: Path) -> tuple[str, int, str | None]:
    """(format, virtual size, external file it refers to, if any) of a disk image, from ``qemu-img info``."""
    try:
        out = subprocess.run(
            ["qemu-img", "info", "--output", "json", "-U", str(path)],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise InvalidInput(f"{path}: not a disk image qemu-img can read: {exc.stderr.strip()}") from exc
    info = json.loads(out)
    return info["format"], int(info["virtual-size"]), _external_file(info)


def copy_with_checksum(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` atomically (mode 0644) and return its SHA-256."""
    digest = hashlib.sha256()
    with source.open("rb") as src, atomic_open(target, 0o644) as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def find_image(session: Session, ref: str) -> Image:
    """An image by id or name, or NotFound."""
    image = session.get(Image, ref) or session.scalar(select(Image).where(Image.name == ref))
    if image is None:
        raise NotFound("image", ref)
    return image


def _check_id(session: Session, ami_id: str, kind: str) -> None:
    if not ids.is_valid(ami_id, KINDS[kind]):
        prefix = ids.PREFIXES[KINDS[kind]]
        raise InvalidInput(f"invalid id {ami_id!r} for a {kind} image: expected {prefix}- and 8 or 17 hex digits")
    if session.get(Image, ami_id):
        raise AlreadyExists(f"image id {ami_id} is already registered")


def _linked(session: Session, ref: str | None, kind: str) -> str | None:
    if ref is None:
        return None
    image = find_image(session, ref)
    if image.kind != kind:
        raise InvalidInput(f"image {ref!r} is a {image.kind} image, not a {kind}")
    return image.id


def add_image(
    cloud: CloudContext,
    name: str,
    file: Path,
    kind: str = "machine",
    disk_format: str | None = None,
    public: bool = False,
    ami_id: str | None = None,
    kernel: str | None = None,
    ramdisk: str | None = None,
    cmdline: str = "",
    description: str = "",
) -> Image:
    """Copy ``file`` into the repository, record its checksum and register it."""
    if kind not in KINDS:
        raise InvalidInput(f"image kind must be one of {', '.join(KINDS)}")
    if not _NAME_RE.match(name):
        raise InvalidInput(f"invalid image name {name!r}")
    if not file.is_file():
        raise InvalidInput(f"{file}: no such file")
    if kind != "machine" and (kernel or ramdisk or disk_format == "qcow2"):
        raise InvalidInput("kernel and ramdisk images are plain files: no --format qcow2, --kernel or --ramdisk")
    if kind == "machine":
        detected, virtual_size, external = inspect_disk(file)
        if external:
            raise InvalidInput(f"{file}: images with {external} are refused (it would point at host files)")
        if detected not in FORMATS:
            raise InvalidInput(f"{file}: format {detected} is not supported (use raw or qcow2)")
        if disk_format and disk_format != detected:
            raise InvalidInput(f"{file}: --format {disk_format} given but the file is {detected}")
        disk_format = detected
    else:
        disk_format, virtual_size = "raw", file.stat().st_size
    with cloud.store.read() as session:
        if session.scalar(select(Image).where(Image.name == name)):
            raise AlreadyExists(f"image {name!r} already exists")
        if ami_id:
            _check_id(session, ami_id, kind)
        kernel_id = _linked(session, kernel, "kernel")
        ramdisk_id = _linked(session, ramdisk, "ramdisk")
    image_id = ami_id or ids.new_id(KINDS[kind])
    cloud.prepare_state_dir()
    target = cloud.config.image_dir / f"{image_id}.{'img' if kind == 'machine' else kind}"
    sha256 = copy_with_checksum(file, target)
    image = Image(
        id=image_id, name=name, kind=kind, path=str(target), disk_format=disk_format,
        size_bytes=target.stat().st_size, virtual_size_bytes=virtual_size, sha256=sha256, public=public,
        kernel_id=kernel_id, ramdisk_id=ramdisk_id, cmdline=cmdline, description=description,
    )
    try:
        with cloud.store.write() as session:
            if session.scalar(select(Image).where(or_(Image.name == name, Image.id == image_id))):
                raise AlreadyExists(f"image {name!r} ({image_id}) already exists")
            session.add(image)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return image


def list_images(cloud: CloudContext, farm_id: int | None = None) -> list[Image]:
    """Every image (admin), or what a farm may see: public images, its own and those shared with it."""
    with cloud.store.read() as session:
        query = select(Image).order_by(Image.created_at, Image.id)
        if farm_id is not None:
            query = query.where(visible_to(farm_id))
        return list(session.scalars(query))


def farm_names(cloud: CloudContext) -> dict[int, str]:
    """``{farm id: name}``, to show who owns farm images."""
    with cloud.store.read() as session:
        return {farm_id: name for farm_id, name in session.execute(select(Farm.id, Farm.name))}


def farms_shared_with(cloud: CloudContext, image_id: str) -> list[int]:
    """The farms an image is shared with (launch permissions)."""
    with cloud.store.read() as session:
        return shared_with(session, [image_id]).get(image_id, [])


def show_image(cloud: CloudContext, ref: str) -> Image:
    """One image by id or name."""
    with cloud.store.read() as session:
        return find_image(session, ref)


def set_public(cloud: CloudContext, ref: str, public: bool) -> Image:
    """Publish or unpublish an image (site images, or a farm's: then every farm sees and launches it)."""
    with cloud.store.write() as session:
        image = find_image(session, ref)
        if image.state != "available" and public:
            raise InvalidInput(f"image {image.name!r} is {image.state}: only available images are published")
        image.public = public
        return image


def remove_image(cloud: CloudContext, ref: str) -> None:
    """Remove an image no instance uses and no machine image boots with."""
    with cloud.store.write() as session:
        image = find_image(session, ref)
        user = session.scalar(
            select(Instance.id).where(Instance.image_id == image.id, Instance.state.in_(LIVE_STATES)).limit(1)
        )
        if user:
            raise InUse(f"image {image.name!r} is used by instance {user}")
        dependant = session.scalar(
            select(Image.name).where(or_(Image.kernel_id == image.id, Image.ramdisk_id == image.id)).limit(1)
        )
        if dependant:
            raise InUse(f"image {image.name!r} is the kernel or ramdisk of image {dependant!r}")
        for instance in session.scalars(select(Instance).where(Instance.image_id == image.id)):
            session.delete(instance)
        path = Path(image.path)
        session.execute(delete(LaunchPermission).where(LaunchPermission.image_id == image.id))
        session.delete(image)
    path.unlink(missing_ok=True)
