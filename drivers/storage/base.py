"""What ivfarm needs from a storage backend."""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.errors import StorageError
from drivers.storage.export import flatten
from drivers.uris import uri_is_local


@dataclass(frozen=True)
class BaseImage:
    """A registered image as storage needs it: where it is and what it holds."""

    image_id: str
    path: str
    disk_format: str  # raw | qcow2
    virtual_size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Disk:
    """A disk ready to attach: what the domain XML needs to know."""

    name: str  # volume name, unique per host
    path: str  # file or block device path on the host
    disk_format: str  # qcow2 | raw
    source_type: str = "file"  # file | block | network
    network_protocol: str | None = None  # gluster when source_type == network
    network_name: str | None = None  # volume/path for a network disk
    network_hosts: tuple[str, ...] = ()


def disk_names(instance_id: str) -> tuple[str, str]:
    """The names of an instance's root and ephemeral disks, the same on every backend and host."""
    return f"{instance_id}-root.qcow2", f"{instance_id}-ephemeral.qcow2"


# Brings an image into a host's local cache; returns it with ``path`` where that host reads it.
ImageCache = Callable[[str, BaseImage], BaseImage]


class Storage(abc.ABC):
    """Creates, moves and removes an instance's disks on a host."""

    name: str = "abstract"
    shared: bool = False  # True when every host of the class sees the same disks (live migration)
    # shared on the site's word: a file system libvirt cannot recognise as shared (its own check
    # refuses the live migration, so the migration is told the disks are safe)
    vouched_shared: bool = False
    backing_files: bool = False  # True when disks name their base image's path (copy-on-write overlays)

    def prepare_image(self, uri: str, image: BaseImage) -> BaseImage:
        """The image as the host reads it, cached or copied there first where the backend needs that."""
        return image

    @abc.abstractmethod
    def create_root(self, uri: str, instance_id: str, image: BaseImage, size_bytes: int) -> Disk:
        """A copy-on-write root disk on ``image`` (O(1) in the image size where the backend allows)."""

    @abc.abstractmethod
    def create_blank(self, uri: str, name: str, size_bytes: int) -> Disk:
        """An empty disk (ephemeral storage)."""

    @abc.abstractmethod
    def delete(self, uri: str, name: str) -> None:
        """Remove a disk; a missing disk is fine."""

    @abc.abstractmethod
    def list_names(self, uri: str) -> list[str]:
        """Names of every disk this backend holds on the host (for reconcile)."""

    @abc.abstractmethod
    def exists(self, uri: str, name: str) -> bool:
        """True when the named disk is on the host."""

    @abc.abstractmethod
    def disk(self, uri: str, name: str) -> Disk:
        """An existing disk on the host, ready to attach."""

    @abc.abstractmethod
    def copy(self, uri: str, source: str, name: str, size_bytes: int) -> Disk:
        """A full, independent copy of disk ``source`` as ``name``, at least ``size_bytes`` large, in the
        same pool (snapshots of volumes, volumes from snapshots); a leftover ``name`` is replaced."""

    @abc.abstractmethod
    def resize(self, uri: str, name: str, size_bytes: int) -> None:
        """Grow a disk no running domain uses to ``size_bytes``."""

    @abc.abstractmethod
    def move(self, uri: str, name: str, dest_uri: str) -> Disk:
        """Make the disk available on ``dest_uri`` and gone from ``uri`` (cold migration); O(1) when shared."""

    def export(self, uri: str, name: str, target: Path) -> None:
        """Write disk ``name`` flattened (its backing chain merged in) as a standalone qcow2 ``target`` on
        this machine; a disk a running guest uses is read as it is (crash-consistent)."""
        if not uri_is_local(uri):
            raise StorageError(f"{self.name} disks on {uri} cannot be exported: the host is not this machine")
        disk = self.disk(uri, name)
        flatten(disk.path, disk.disk_format, target)
