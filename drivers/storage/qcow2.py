"""qcow2 overlays in a libvirt pool: local ``dir`` pools by default (both classes), the base for gluster."""
from __future__ import annotations

from pathlib import Path

import libvirt

from drivers.errors import StorageError
from drivers.storage.base import BaseImage, Disk, ImageCache, Storage, disk_names
from drivers.storage.pools import (
    Connect,
    create_volume,
    delete_volume,
    ensure_pool,
    pool_xml,
    volume_exists,
    volume_xml,
)
from drivers.storage.transfer import copy_volume, download_file, physical_size
from drivers.uris import uri_is_local


class Qcow2DirStorage(Storage):
    """Disks are qcow2 volumes in the pool ``pool_name`` at ``directory`` on each host.

    With an ``image_cache``, overlays sit on the host's cached copy of the image; without one, on
    the repository's path (a single host, or hosts that mount the repository).
    """

    name = "qcow2"
    backing_files = True

    def __init__(self, connect: Connect, directory: Path, pool_name: str, shared: bool = False,
                 image_cache: ImageCache | None = None, vouched_shared: bool = False) -> None:
        self._connect = connect
        self.directory = directory
        self.pool_name = pool_name
        self.shared = shared or vouched_shared
        self.vouched_shared = vouched_shared
        self._image_cache = image_cache

    def pool_definition(self) -> str:
        """The libvirt pool XML of this backend on every host."""
        return pool_xml(self.pool_name, "dir", str(self.directory))

    def _pool(self, uri: str) -> libvirt.virStoragePool:
        return ensure_pool(self._connect(uri), self.pool_name, self.pool_definition())

    def prepare_image(self, uri: str, image: BaseImage) -> BaseImage:
        return self._image_cache(uri, image) if self._image_cache else image

    def create_root(self, uri: str, instance_id: str, image: BaseImage, size_bytes: int) -> Disk:
        name = disk_names(instance_id)[0]
        xml = volume_xml(name, max(size_bytes, image.virtual_size_bytes), "qcow2", image.path, image.disk_format)
        vol = create_volume(self._pool(uri), xml)
        return Disk(name=name, path=vol.path(), disk_format="qcow2")

    def create_blank(self, uri: str, name: str, size_bytes: int) -> Disk:
        vol = create_volume(self._pool(uri), volume_xml(name, size_bytes, "qcow2"))
        return Disk(name=name, path=vol.path(), disk_format="qcow2")

    def delete(self, uri: str, name: str) -> None:
        delete_volume(self._pool(uri), name)

    def list_names(self, uri: str) -> list[str]:
        pool = self._pool(uri)
        pool.refresh(0)
        return list(pool.listVolumes())

    def _lookup(self, uri: str, name: str) -> libvirt.virStorageVol | None:
        """The volume, looked for again after a refresh when the pool does not list it (on shared
        storage another host may have created it)."""
        pool = self._pool(uri)
        if not volume_exists(pool, name):
            pool.refresh(0)
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None

    def exists(self, uri: str, name: str) -> bool:
        return self._lookup(uri, name) is not None

    def disk(self, uri: str, name: str) -> Disk:
        vol = self._lookup(uri, name)
        if vol is None:
            raise StorageError(f"no disk {name} in pool {self.pool_name} on {uri}")
        return Disk(name=name, path=vol.path(), disk_format="qcow2")

    def copy(self, uri: str, source: str, name: str, size_bytes: int) -> Disk:
        vol = self._lookup(uri, source)
        if vol is None:
            raise StorageError(f"no disk {source} in pool {self.pool_name} on {uri}")
        pool = self._pool(uri)
        delete_volume(pool, name)
        xml = volume_xml(name, max(size_bytes, int(vol.info()[1])), "qcow2")
        try:
            copied = pool.createXMLFrom(xml, vol, 0)  # qemu-img convert: a flat copy, no backing file
        except libvirt.libvirtError as exc:
            delete_volume(pool, name)
            raise StorageError(f"cannot copy {source} to {name} on {uri}: {exc.get_error_message()}") from exc
        return Disk(name=name, path=copied.path(), disk_format="qcow2")

    def resize(self, uri: str, name: str, size_bytes: int) -> None:
        vol = self._lookup(uri, name)
        if vol is None:
            raise StorageError(f"no disk {name} in pool {self.pool_name} on {uri}")
        try:
            vol.resize(size_bytes, 0)
        except libvirt.libvirtError as exc:
            raise StorageError(f"cannot resize {name} on {uri}: {exc.get_error_message()}") from exc

    def move(self, uri: str, name: str, dest_uri: str) -> Disk:
        if self.shared:
            return self.disk(dest_uri, name)
        source = self._pool(uri)
        vol = self._lookup(uri, name)
        if vol is None:
            raise StorageError(f"no disk {name} in pool {self.pool_name} on {uri}")
        copy_volume(self._connect(uri), vol, self._connect(dest_uri), self._pool(dest_uri),
                    volume_xml(name, max(physical_size(vol), 1), "raw"), sparse=True)
        delete_volume(source, name)
        return self.disk(dest_uri, name)

    def export(self, uri: str, name: str, target: Path) -> None:
        """On a remote host the disk is flattened there (libvirt clones through ``qemu-img convert``) and the
        copy streamed here."""
        if uri_is_local(uri):
            super().export(uri, name, target)
            return
        vol = self._lookup(uri, name)
        if vol is None:
            raise StorageError(f"no disk {name} in pool {self.pool_name} on {uri}")
        pool = self._pool(uri)
        flat_name = f"{name}.export"
        try:
            flat = pool.createXMLFrom(volume_xml(flat_name, int(vol.info()[1]), "qcow2"), vol, 0)
        except libvirt.libvirtError as exc:
            raise StorageError(f"cannot flatten {name} on {uri}: {exc.get_error_message()}") from exc
        try:
            download_file(self._connect(uri), flat, target)
        finally:
            delete_volume(pool, flat_name)
