"""Small files ivfarm keeps on a host beside its VMs: NoCloud seeds and serial console logs.

On this machine they are plain files; on a remote host they travel through a libvirt ``dir`` pool
with stream upload and download, so no extra channel to the host is needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import libvirt

from drivers.storage.pools import Connect, delete_volume, download, ensure_pool, pool_xml, upload
from drivers.uris import uri_is_local


class HostFiles:
    """Files in ``directory`` (one per kind, e.g. seeds or console) on each host."""

    def __init__(self, connect: Connect, directory: Path, pool_name: str) -> None:
        self._connect = connect
        self.directory = directory
        self.pool_name = pool_name

    def path(self, name: str) -> str:
        """Where ``name`` lives on every host."""
        return str(self.directory / name)

    def _pool(self, uri: str) -> libvirt.virStoragePool:
        return ensure_pool(self._connect(uri), self.pool_name, pool_xml(self.pool_name, "dir", str(self.directory)))

    def ensure_directory(self, uri: str) -> None:
        """Make sure the directory exists on the host (libvirt writes console logs into it)."""
        if uri_is_local(uri):
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o755)
        else:
            self._pool(uri)

    def write(self, uri: str, name: str, data: bytes) -> str:
        """Write ``data`` as ``name`` (mode 0600: only the hypervisor, which relabels it, reads it)."""
        if not uri_is_local(uri):
            return upload(self._connect(uri), self._pool(uri), name, data)
        self.ensure_directory(uri)
        target = self.directory / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when an older file had other modes
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException:  # e.g. the disk is full: no half-written file stays behind
            target.unlink(missing_ok=True)
            raise
        return str(target)

    def read(self, uri: str, name: str) -> bytes:
        """The file's content, or empty bytes when it does not exist."""
        if not uri_is_local(uri):
            try:
                return download(self._connect(uri), self._pool(uri), name)
            except libvirt.libvirtError:
                return b""
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return b""

    def delete(self, uri: str, name: str) -> None:
        """Remove the file; a missing one is fine."""
        if not uri_is_local(uri):
            delete_volume(self._pool(uri), name)
            return
        (self.directory / name).unlink(missing_ok=True)

    def list_names(self, uri: str) -> list[str]:
        """Every file of this kind on the host."""
        if not uri_is_local(uri):
            pool = self._pool(uri)
            pool.refresh(0)
            return list(pool.listVolumes())
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir())
