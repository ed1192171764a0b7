"""Local qcow2 overlays in a libvirt ``dir`` pool: the default backend for both classes."""
from __future__ import annotations

from pathlib import Path

from drivers.storage.base import BaseImage, Disk, Storage
from drivers.storage.pools import Connect, create_volume, delete_volume, ensure_pool, pool_xml, volume_exists, volume_xml


class Qcow2DirStorage(Storage):
    """Disks are qcow2 volumes in the pool ``pool_name`` at ``directory`` on each host."""

    name = "qcow2"

    def __init__(self, connect: Connect, directory: Path, pool_name: str, shared: bool = False) -> None:
        self._connect = connect
        self.directory = directory
        self.pool_name = pool_name
        self.shared = shared

    def _pool(self, uri: str):  # type: ignore[no-untyped-def]
        return ensure_pool(self._connect(uri), self.pool_name, pool_xml(self.pool_name, "dir", str(self.directory)))

    def backing_path(self, uri: str, image: BaseImage) -> str:
        """Where the base image is on the host; the repository path unless a cache says otherwise."""
        return image.path

    def create_root(self, uri: str, instance_id: str, image: BaseImage, size_bytes: int) -> Disk:
        name = f"{instance_id}-root.qcow2"
        xml = volume_xml(name, max(size_bytes, image.virtual_size_bytes), "qcow2",
                         self.backing_path(uri, image), image.disk_format)
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

    def exists(self, uri: str, name: str) -> bool:
        return volume_exists(self._pool(uri), name)
