"""Worker-class disks as logical volumes of a volume group (libvirt ``logical`` pool): full disk speed.

The root LV is a full copy of the image, made on the host by libvirt (``createXMLFrom``) from the
host's image cache, which is exposed as a ``dir`` pool. Volumes are always fully allocated (a
smaller ``allocation`` would ask libvirt for a snapshot-based sparse LV).

Declared limitation: the development machine has no device-mapper, so LVs cannot be created
there; this backend is exercised on libvirt's test driver (pool and volume XML, naming, blank
volumes) and is meant for real sites.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
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
)
from drivers.storage.transfer import copy_volume


def lv_name(name: str) -> str:
    """The LV that holds disk ``name`` (``i-...-root.qcow2`` -> ``i-...-root``)."""
    return name.removesuffix(".qcow2")


def logical_pool_xml(name: str, volume_group: str, devices: Sequence[str]) -> str:
    """A ``logical`` pool on ``volume_group``; ``devices`` are its physical volumes (to build it)."""
    source = ET.Element("source")
    for device in devices:
        ET.SubElement(source, "device", path=device)
    ET.SubElement(source, "name").text = volume_group
    ET.SubElement(source, "format", type="lvm2")
    return pool_xml(name, "logical", f"/dev/{volume_group}", source)


def lv_volume_xml(name: str, size_bytes: int) -> str:
    """A fully allocated LV of ``size_bytes``."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size_bytes)
    ET.SubElement(vol, "allocation", unit="bytes").text = str(size_bytes)
    return ET.tostring(vol, encoding="unicode")


class LvmStorage(Storage):
    """Disks are LVs in ``volume_group`` on each host; images come from the host's cache."""

    name = "lvm"

    def __init__(self, connect: Connect, volume_group: str, devices: Sequence[str], pool_name: str,
                 cache_pool_name: str, image_cache: ImageCache | None = None) -> None:
        self._connect = connect
        self.volume_group = volume_group
        self.devices = tuple(devices)
        self.pool_name = pool_name
        self.cache_pool_name = cache_pool_name
        self._image_cache = image_cache

    def _pool(self, uri: str) -> libvirt.virStoragePool:
        # build (pvcreate + vgcreate) only when devices are configured, and never over existing data
        build = libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE if self.devices else None
        xml = logical_pool_xml(self.pool_name, self.volume_group, self.devices)
        return ensure_pool(self._connect(uri), self.pool_name, xml, build)

    def _cached_volume(self, uri: str, image: BaseImage) -> libvirt.virStorageVol:
        path = Path(image.path)
        pool = ensure_pool(self._connect(uri), self.cache_pool_name,
                           pool_xml(self.cache_pool_name, "dir", str(path.parent)))
        pool.refresh(0)
        try:
            return pool.storageVolLookupByName(path.name)
        except libvirt.libvirtError as exc:
            raise StorageError(f"image {image.image_id} is not in the cache of {uri} ({path})") from exc

    def prepare_image(self, uri: str, image: BaseImage) -> BaseImage:
        return self._image_cache(uri, image) if self._image_cache else image

    def create_root(self, uri: str, instance_id: str, image: BaseImage, size_bytes: int) -> Disk:
        name = disk_names(instance_id)[0]
        pool = self._pool(uri)
        delete_volume(pool, lv_name(name))
        xml = lv_volume_xml(lv_name(name), max(size_bytes, image.virtual_size_bytes))
        try:
            vol = pool.createXMLFrom(xml, self._cached_volume(uri, image), 0)
        except libvirt.libvirtError as exc:
            raise StorageError(f"cannot create LV {lv_name(name)} on {uri}: {exc.get_error_message()}") from exc
        return self._as_disk(name, vol)

    def create_blank(self, uri: str, name: str, size_bytes: int) -> Disk:
        return self._as_disk(name, create_volume(self._pool(uri), lv_volume_xml(lv_name(name), size_bytes)))

    @staticmethod
    def _as_disk(name: str, vol: libvirt.virStorageVol) -> Disk:
        return Disk(name=name, path=vol.path(), disk_format="raw", source_type="block")

    def delete(self, uri: str, name: str) -> None:
        delete_volume(self._pool(uri), lv_name(name))

    def list_names(self, uri: str) -> list[str]:
        pool = self._pool(uri)
        pool.refresh(0)
        return list(pool.listVolumes())

    def exists(self, uri: str, name: str) -> bool:
        return volume_exists(self._pool(uri), lv_name(name))

    def disk(self, uri: str, name: str) -> Disk:
        try:
            return self._as_disk(name, self._pool(uri).storageVolLookupByName(lv_name(name)))
        except libvirt.libvirtError as exc:
            raise StorageError(f"no LV {lv_name(name)} in {self.volume_group} on {uri}") from exc

    def copy(self, uri: str, source: str, name: str, size_bytes: int) -> Disk:
        pool = self._pool(uri)
        try:
            vol = pool.storageVolLookupByName(lv_name(source))
        except libvirt.libvirtError as exc:
            raise StorageError(f"no LV {lv_name(source)} in {self.volume_group} on {uri}") from exc
        delete_volume(pool, lv_name(name))
        xml = lv_volume_xml(lv_name(name), max(size_bytes, int(vol.info()[1])))
        try:
            return self._as_disk(name, pool.createXMLFrom(xml, vol, 0))
        except libvirt.libvirtError as exc:
            raise StorageError(f"cannot copy LV {lv_name(source)} on {uri}: {exc.get_error_message()}") from exc

    def resize(self, uri: str, name: str, size_bytes: int) -> None:
        try:
            self._pool(uri).storageVolLookupByName(lv_name(name)).resize(size_bytes, 0)
        except libvirt.libvirtError as exc:
            raise StorageError(f"cannot resize LV {lv_name(name)} on {uri}: {exc.get_error_message()}") from exc

    def move(self, uri: str, name: str, dest_uri: str) -> Disk:
        source = self._pool(uri)
        vol = source.storageVolLookupByName(lv_name(name))
        capacity = int(vol.info()[1])
        copy_volume(self._connect(uri), vol, self._connect(dest_uri), self._pool(dest_uri),
                    lv_volume_xml(lv_name(name), capacity), sparse=False)
        delete_volume(source, lv_name(name))
        return self.disk(dest_uri, name)
