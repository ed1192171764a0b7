"""What ivfarm needs from a storage backend."""
from __future__ import annotations

import abc
from dataclasses import dataclass


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


class Storage(abc.ABC):
    """Creates and removes an instance's disks on a host."""

    name: str = "abstract"
    shared: bool = False  # True when every host of the class sees the same disks (live migration)

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
