"""CreateImage: an instance's root disk flattened into the image repository as a farm's private image.

``begin_create_image`` decides in one transaction (image row ``pending``, a ``create-image`` job, and
for a running instance imaged with a reboot, the instance ``stopping``); ``create_image`` is the job:
it stops the instance if asked, writes ``<id>.img.partial`` by flattening the disk (overlay and
backing merged, ``qemu-img convert``), records the checksum, renames it into place and makes the
image ``available``; any failure removes the file and marks the image ``failed``. The instance is
started again when it was stopped for this. A host whose guests are not real (libvirt's test
driver) never wrote its disk: its image is the instance's source image, flattened the same way.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from sqlalchemy import or_, select, update

from drivers.storage.base import disk_names
from drivers.storage.export import flatten, sha256_of
from ivfarm import ids
from ivfarm.errors import AlreadyExists, InvalidInput, InvalidState, IvfarmError
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.images.catalog import inspect_disk
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy.tags import add_tags
from ivfarm.store import jobs
from ivfarm.store.models import Image, Job, utcnow
from ivfarm.store.states import InstanceState as S
from ivfarm.store.transitions import compare_and_set

log = logging.getLogger(__name__)
KIND = "create-image"
NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./'@_-]{3,128}$")  # AWS's characters for an AMI name
GIB = 1024**3
FAILED = "Server.InternalError: the image could not be created"


def begin_create_image(cloud: CloudContext, farm_id: int, instance_id: str, name: str, description: str = "",
                       no_reboot: bool = False, tags: dict[str, str] | None = None, request_id: str = "") -> str:
    """Record a pending image of a stopped or running instance and queue the job that makes it; returns its id.
    A running instance imaged without ``no_reboot`` is stopped, imaged and started again."""
    if not NAME_RE.match(name):
        raise InvalidInput(f"invalid image name {name!r}: 3 to 128 letters, digits and ( ) [ ] . / ' @ _ - or spaces")
    with cloud.store.write() as session:
        instance = instances.get_instance(session, instance_id, farm_id)
        if instance.state not in (S.RUNNING, S.STOPPED) or instance.host_id is None:
            raise InvalidState(f"instance {instance_id} is {instance.state}; it must be running or stopped")
        if session.scalar(select(Image.id).where(Image.name == name)) is not None:
            raise AlreadyExists(f"an image named {name!r} already exists")
        source: Image = instance.image
        image_id = ids.new_id("image")
        restart = instance.state == S.RUNNING and not no_reboot
        root_gb = max(1, math.ceil(source.virtual_size_bytes / GIB), instance.disk_gb)
        session.add(Image(
            id=image_id, name=name, kind="machine", path=str(cloud.config.image_dir / f"{image_id}.img"),
            disk_format="qcow2", size_bytes=0, virtual_size_bytes=0, sha256="", public=False, owner_farm_id=farm_id,
            kernel_id=source.kernel_id, ramdisk_id=source.ramdisk_id, cmdline=source.cmdline,
            description=description, state="pending", state_reason="", source_instance_id=instance_id,
            block_devices=[{"device": "/dev/vda", "size_gb": root_gb}], created_at=utcnow(),
        ))
        if restart:
            compare_and_set(session, instance_id, S.STOPPING, expect=(S.RUNNING,), owner=journal.me())
        jobs.enqueue(session, KIND, instance_id=instance_id, farm_id=farm_id, host_id=instance.host_id,
                     payload={"image": image_id, "restart": restart, "request": request_id})
        if tags:
            session.flush()
            add_tags(session, farm_id, {image_id: "image"}, tags)
    if restart:
        journal.watch(cloud)
    return image_id


def _mark(cloud: CloudContext, image_id: str, **values: object) -> bool:
    """Move a pending image on (compare-and-set from pending); False when it is no longer pending."""
    with cloud.store.write() as session:
        done = session.execute(update(Image).where(Image.id == image_id, Image.state == "pending")
                               .values(**values).execution_options(synchronize_session=False))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def _state(cloud: CloudContext, instance_id: str) -> str:
    with cloud.store.read() as session:
        return str(instances.get_instance(session, instance_id).state)


def _export(cloud: CloudContext, instance_id: str, partial: Path) -> None:
    with cloud.store.read() as session:
        instance = instances.get_instance(session, instance_id)
        if instance.state not in (S.RUNNING, S.STOPPED, S.STOPPING) or instance.host is None:
            raise InvalidState(f"instance {instance_id} is {instance.state}: its disk is gone or moving")
        uri, host_class = instance.host.uri, instance.host_class
        source_path, source_format = instance.image.path, instance.image.disk_format
    if cloud.hypervisor.features(uri).real_guests:
        cloud.storage(host_class).export(uri, disk_names(instance_id)[0], partial)
    else:  # the disk of a guest that never ran holds its image unchanged
        flatten(source_path, source_format, partial)


def create_image(cloud: CloudContext, image_id: str, instance_id: str, restart: bool) -> None:
    """The job: flatten the instance's root disk into the repository and make the image available."""
    with cloud.store.read() as session:
        image = session.get(Image, image_id)
        if image is None or image.state != "pending":
            log.info("image %s is no longer pending; nothing to make", image_id)
            return
        target = Path(image.path)
    partial = target.with_name(target.name + ".partial")
    try:
        if restart and _state(cloud, instance_id) != S.STOPPED:  # a job run again after a crash finds it stopped
            instances.stop(cloud, instance_id)
        cloud.prepare_state_dir()
        _export(cloud, instance_id, partial)
        sha256 = sha256_of(partial)
        _, virtual_size, _ = inspect_disk(partial)
        partial.chmod(0o644)
        partial.rename(target)
        if not _mark(cloud, image_id, state="available", sha256=sha256, size_bytes=target.stat().st_size,
                     virtual_size_bytes=virtual_size):
            target.unlink(missing_ok=True)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        _mark(cloud, image_id, state="failed", state_reason=FAILED)
        if isinstance(exc, IvfarmError):
            raise
        raise IvfarmError(f"creating image {image_id} of {instance_id} failed: {exc}") from exc
    finally:
        if restart:
            _start_again(cloud, instance_id)


def _start_again(cloud: CloudContext, instance_id: str) -> None:
    """Start the instance CreateImage stopped (unless someone changed it meanwhile)."""
    try:
        provisioning.start(cloud, instance_id)
    except InvalidState as exc:
        log.info("%s was not started again after its image: %s", instance_id, exc)


def stuck_images(cloud: CloudContext) -> list[str]:
    """Pending images no job is making any more: none queued, none running with a fresh heartbeat."""
    stale = utcnow() - journal.lapse(cloud)
    with cloud.store.read() as session:
        pending = list(session.scalars(select(Image.id).where(Image.state == "pending").order_by(Image.id)))
        live = session.scalars(select(Job).where(Job.kind == KIND, or_(
            Job.state == "queued", (Job.state == "running") & (Job.heartbeat_at >= stale))))
        made = {str(job.payload.get("image")) for job in live}
    return [image_id for image_id in pending if image_id not in made]


def fail_stuck(cloud: CloudContext, image_id: str) -> None:
    """A pending image whose job is lost: remove any half-made file and mark it failed."""
    with cloud.store.read() as session:
        image = session.get(Image, image_id)
        if image is None:
            return
        target = Path(image.path)
    target.with_name(target.name + ".partial").unlink(missing_ok=True)
    if _mark(cloud, image_id, state="failed", state_reason=FAILED):
        target.unlink(missing_ok=True)
