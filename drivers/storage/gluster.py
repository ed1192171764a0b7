"""Service-class disks on a GlusterFS volume that every service host mounts (fuse, libvirt ``netfs`` pool).

Overlays and their base images all live on the volume, so any service host can run (live-migrate
to, restart after a failure) any service VM. The fuse mount is used rather than libvirt's native
gluster disks: gfapi clients pay seconds per connection, and plain files keep migration simple.
A base image is copied onto the volume once, through whichever service host needs it first, and
marked complete by a ``<name>.sha256`` volume written only after its checksum matched.
"""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from drivers.errors import DriverConfigError, StorageError
from drivers.storage.base import BaseImage
from drivers.storage.pools import (
    Connect,
    delete_volume,
    pool_xml,
    upload,
    volume_exists,
)
from drivers.storage.qcow2 import Qcow2DirStorage
from drivers.storage.transfer import upload_file
from fileops.locks import exclusive_lock

FS_NS = "http://libvirt.org/schemas/storagepool/fs/1.0"
ET.register_namespace("fs", FS_NS)


def gluster_pool_xml(name: str, volume: str, servers: Sequence[str], mount: str) -> str:
    """A ``netfs`` pool mounting ``servers[0]:/volume`` on ``mount``, the other servers as volfile backups."""
    source = ET.Element("source")
    ET.SubElement(source, "host", name=servers[0])
    ET.SubElement(source, "dir", path=f"/{volume}")
    ET.SubElement(source, "format", type="glusterfs")
    pool = ET.fromstring(pool_xml(name, "netfs", mount, source))
    if len(servers) > 1:
        options = ET.SubElement(pool, f"{{{FS_NS}}}mount_opts")
        ET.SubElement(options, f"{{{FS_NS}}}option", name="backup-volfile-servers=" + ":".join(servers[1:]))
    return ET.tostring(pool, encoding="unicode")


class GlusterStorage(Qcow2DirStorage):
    """qcow2 overlays on base images, both on the shared volume."""

    name = "gluster"

    def __init__(self, connect: Connect, volume: str, servers: Sequence[str], mount: Path, pool_name: str,
                 lock_dir: Path) -> None:
        if not volume or not servers:
            raise DriverConfigError("storage.service.gluster needs a volume and at least one server in hosts")
        super().__init__(connect, mount, pool_name, shared=True)
        self.volume = volume
        self.servers = tuple(servers)
        self._lock_dir = lock_dir

    def pool_definition(self) -> str:
        return gluster_pool_xml(self.pool_name, self.volume, self.servers, str(self.directory))

    def _image_lock(self, image_id: str) -> AbstractContextManager[None]:
        return exclusive_lock(self._lock_dir / f"gluster-{self.volume}-{image_id}.lock")

    def prepare_image(self, uri: str, image: BaseImage) -> BaseImage:
        """Copy the image onto the volume unless a verified copy is there; the copy on the volume."""
        name = f"base-{image.image_id}.{image.disk_format}"
        marker = f"{name}.sha256"
        pool = self._pool(uri)
        with self._image_lock(image.image_id):
            if not volume_exists(pool, marker):
                pool.refresh(0)  # another service host may have copied it
            if not volume_exists(pool, marker):
                digest = upload_file(self._connect(uri), pool, name, Path(image.path))
                if image.sha256 and digest != image.sha256:
                    delete_volume(pool, name)
                    raise StorageError(f"the repository's copy of {image.image_id} is corrupt: "
                                          f"sha256 {digest}, registered {image.sha256}")
                upload(self._connect(uri), pool, marker, digest.encode())
        return dataclasses.replace(image, path=pool.storageVolLookupByName(name).path())
