"""Moving bytes into and between hosts' storage pools through libvirt streams (no other channel needed)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import libvirt

from drivers.errors import StorageError
from drivers.storage.pools import create_volume, volume_xml

CHUNK = 4 * 1024 * 1024


def _send_all(stream: libvirt.virStream, data: bytes) -> int:
    view = memoryview(data)
    while view:
        sent = stream.send(view.tobytes())
        view = view[sent:]
    return len(data)


def physical_size(vol: libvirt.virStorageVol) -> int:
    """Bytes the volume occupies as a file or device (not its guest-visible capacity)."""
    return int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])


def upload_file(conn: libvirt.virConnect, pool: libvirt.virStoragePool, name: str, source: Path) -> str:
    """Stream a local file into a new raw volume ``name``; returns the file's SHA-256."""
    size = source.stat().st_size
    vol = create_volume(pool, volume_xml(name, max(size, 1), "raw", mode="0644"))
    digest = hashlib.sha256()
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, size, 0)
        with source.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                _send_all(stream, chunk)
        stream.finish()
    except (libvirt.libvirtError, OSError) as exc:
        _abort(stream)
        vol.delete(0)
        raise StorageError(f"cannot upload {source} as volume {name}: {exc}") from exc
    return digest.hexdigest()


def copy_volume(
    src_conn: libvirt.virConnect,
    src_vol: libvirt.virStorageVol,
    dst_conn: libvirt.virConnect,
    dst_pool: libvirt.virStoragePool,
    dst_xml: str,
    sparse: bool,
) -> libvirt.virStorageVol:
    """Copy a volume byte for byte into a new volume of ``dst_pool`` made from ``dst_xml`` (as large as
    the source's physical size); holes stay holes when ``sparse``."""
    size = physical_size(src_vol)
    dst_vol = create_volume(dst_pool, dst_xml)
    name = dst_vol.name()
    down, up = src_conn.newStream(0), dst_conn.newStream(0)
    try:
        if sparse:
            src_vol.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            dst_vol.upload(up, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            down.sparseRecvAll(lambda _s, buf, _o: _send_all(up, buf),
                               lambda _s, length, _o: up.sendHole(length, 0), None)
        else:
            src_vol.download(down, 0, size, 0)
            dst_vol.upload(up, 0, size, 0)
            down.recvAll(lambda _s, buf, _o: _send_all(up, buf), None)
        down.finish()
        up.finish()
    except (libvirt.libvirtError, RuntimeError) as exc:
        _abort(down)
        _abort(up)
        dst_vol.delete(0)
        raise StorageError(f"cannot copy volume {name}: {exc}") from exc
    dst_pool.refresh(0)  # the copy is probed again: a qcow2 overlay shows as qcow2 with its backing file
    return dst_pool.storageVolLookupByName(name)


def _abort(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass


def download_file(conn: libvirt.virConnect, vol: libvirt.virStorageVol, target: Path) -> None:
    """Stream a volume into a local file ``target``, holes kept as holes."""
    stream = conn.newStream(0)

    def hole(_stream: libvirt.virStream, length: int, handle: object) -> int:
        handle.seek(length, 1)  # type: ignore[attr-defined]
        return 0

    try:
        with target.open("wb") as handle:
            vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            stream.sparseRecvAll(lambda _s, buf, h: h.write(buf), hole, handle)
            stream.finish()
            handle.truncate()  # a hole at the end still counts in the size
    except (libvirt.libvirtError, OSError, RuntimeError) as exc:
        _abort(stream)
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot download volume {vol.name()}: {exc}") from exc
