"""libvirt storage pools and volumes: the one way ivfarm touches disks on a (possibly remote) host."""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

from drivers.errors import StorageError

Connect = Callable[[str], libvirt.virConnect]


def pool_xml(name: str, pool_type: str, target: str, source: ET.Element | None = None) -> str:
    """XML for a pool of ``pool_type`` rooted at ``target``."""
    pool = ET.Element("pool", type=pool_type)
    ET.SubElement(pool, "name").text = name
    if source is not None:
        pool.append(source)
    tgt = ET.SubElement(pool, "target")
    ET.SubElement(tgt, "path").text = target
    perms = ET.SubElement(tgt, "permissions")
    ET.SubElement(perms, "mode").text = "0755"
    return ET.tostring(pool, encoding="unicode")


_DEFINING = threading.Lock()


def _active_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None
    return pool if pool.isActive() else None


def ensure_pool(conn: libvirt.virConnect, name: str, xml: str, build_flags: int | None = 0) -> libvirt.virStoragePool:
    """Return the active pool ``name``, defining, building (unless ``build_flags`` is None) and starting it.

    Safe when threads or processes race to make the same pool: whoever loses finds the winner's.
    """
    pool = _active_pool(conn, name)
    if pool is not None:
        return pool
    with _DEFINING:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            try:
                pool = conn.storagePoolDefineXML(xml, 0)
                if build_flags is not None:
                    pool.build(build_flags)
                pool.setAutostart(1)
            except libvirt.libvirtError as exc:
                pool = _active_pool(conn, name)  # another process defined it meanwhile
                if pool is not None:
                    return pool
                raise StorageError(f"cannot define storage pool {name}: {exc.get_error_message()}") from exc
        if not pool.isActive():
            try:
                pool.create(0)
            except libvirt.libvirtError as exc:
                if not pool.isActive():
                    raise StorageError(f"cannot start storage pool {name}: {exc.get_error_message()}") from exc
    return pool


def volume_xml(
    name: str,
    size_bytes: int,
    fmt: str,
    backing_path: str | None = None,
    backing_format: str | None = None,
    mode: str = "0600",
) -> str:
    """XML for a volume, optionally a copy-on-write overlay on ``backing_path``."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size_bytes)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = mode
    if backing_path:
        backing = ET.SubElement(vol, "backingStore")
        ET.SubElement(backing, "path").text = backing_path
        ET.SubElement(backing, "format", type=backing_format or "raw")
    return ET.tostring(vol, encoding="unicode")


def create_volume(pool: libvirt.virStoragePool, xml: str) -> libvirt.virStorageVol:
    """Create a volume, replacing a leftover of the same name."""
    name = ET.fromstring(xml).findtext("name")
    try:
        old = pool.storageVolLookupByName(name)
        old.delete(0)
    except libvirt.libvirtError:
        pass
    try:
        return pool.createXML(xml, 0)
    except libvirt.libvirtError as exc:
        raise StorageError(f"cannot create volume {name}: {exc.get_error_message()}") from exc


def delete_volume(pool: libvirt.virStoragePool, name: str) -> None:
    """Delete a volume; a missing one is fine."""
    try:
        vol = pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        vol.delete(0)
    except libvirt.libvirtError as exc:
        raise StorageError(f"cannot delete volume {name}: {exc.get_error_message()}") from exc


def volume_exists(pool: libvirt.virStoragePool, name: str) -> bool:
    """True when the pool holds a volume of that name."""
    try:
        pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return False
    return True


def upload(conn: libvirt.virConnect, pool: libvirt.virStoragePool, name: str, data: bytes) -> str:
    """Store ``data`` as a raw volume through a libvirt stream; returns the volume's path."""
    vol = create_volume(pool, volume_xml(name, max(len(data), 1), "raw"))
    stream = conn.newStream(0)
    vol.upload(stream, 0, len(data), 0)
    stream.send(data)
    stream.finish()
    return vol.path()


def download(conn: libvirt.virConnect, pool: libvirt.virStoragePool, name: str) -> bytes:
    """Read a volume's content through a libvirt stream."""
    pool.refresh(0)
    vol = pool.storageVolLookupByName(name)
    size = vol.info()[1]
    stream = conn.newStream(0)
    vol.download(stream, 0, size, 0)
    chunks = []
    while True:
        chunk = stream.recv(262144)
        if not chunk or chunk == -2:
            break
        chunks.append(chunk)
    stream.finish()
    return b"".join(chunks)
