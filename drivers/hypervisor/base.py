"""What ivfarm needs from a hypervisor, independent of libvirt."""
from __future__ import annotations

import abc
from dataclasses import dataclass

from drivers.storage.base import Disk


@dataclass(frozen=True)
class HostFeatures:
    """What a hypervisor behind a URI can do; declared from the URI, never probed by trial."""

    real_guests: bool  # domains run real guests (consoles, files, networks exist on the host)
    local: bool  # the host is this machine: its files and interfaces are ours to touch
    nwfilter: bool
    live_migration: bool
    domain_type: str
    hotplug: bool = False  # disks attach to and detach from running guests (else: the definition only)
    storage_resize: bool = False  # the host's pools can grow volumes (libvirt's test driver cannot)


@dataclass(frozen=True)
class HostInfo:
    """Capacity as the hypervisor reports it."""

    cpus: int
    memory_mb: int
    hostname: str


@dataclass(frozen=True)
class DomainStatus:
    """One domain on a host, as ivfarm sees it."""

    name: str
    ivfarm_id: str | None  # from our metadata; None for domains ivfarm did not make
    cloud: str | None  # the cloud_id in our metadata: which ivfarm cloud made the domain
    state: str  # running | stopped | paused | crashed | other


@dataclass(frozen=True)
class DomainCounters:
    """A running domain's cumulative counters since it started (they restart from zero with the domain)."""

    boot_id: int  # libvirt's domain id: a new one each time the domain starts, on the host that runs it
    cpu_time_ns: int  # CPU time of all its vCPUs
    rx_bytes: int  # received by the guest, summed over its NICs
    tx_bytes: int  # sent by the guest


class Hypervisor(abc.ABC):
    """Domain lifecycle on one or many hosts addressed by URI."""

    @abc.abstractmethod
    def features(self, uri: str) -> HostFeatures:
        """What the host behind ``uri`` supports."""

    @abc.abstractmethod
    def probe(self, uri: str) -> HostInfo:
        """Open ``uri`` and read capacity; raise HostUnreachable when it cannot be opened."""

    @abc.abstractmethod
    def forget(self, uri: str) -> None:
        """Drop what is kept about ``uri`` (an open connection) after its host went away."""

    @abc.abstractmethod
    def define_and_start(self, uri: str, xml: str, start: bool = True) -> None:
        """Define a persistent domain from XML and optionally start it."""

    @abc.abstractmethod
    def start(self, uri: str, name: str) -> None:
        """Start a defined domain."""

    @abc.abstractmethod
    def stop(self, uri: str, name: str, force: bool = False, timeout_s: float = 30.0) -> None:
        """Shut a domain down (ACPI, then power off after ``timeout_s``; at once with ``force``)."""

    @abc.abstractmethod
    def reboot(self, uri: str, name: str) -> None:
        """Reboot a running domain."""

    @abc.abstractmethod
    def undefine(self, uri: str, name: str) -> None:
        """Power off and remove a domain; absent domains are fine."""

    @abc.abstractmethod
    def status(self, uri: str, name: str) -> DomainStatus | None:
        """The domain's state, or None when it does not exist."""

    @abc.abstractmethod
    def list_domains(self, uri: str) -> list[DomainStatus]:
        """Every domain on the host."""

    @abc.abstractmethod
    def domain_counters(self, uri: str) -> dict[str, DomainCounters]:
        """Counters of every running domain on the host, by domain name."""

    @abc.abstractmethod
    def domain_xml(self, uri: str, name: str) -> str:
        """The domain's current XML."""

    @abc.abstractmethod
    def define_filter(self, uri: str, xml: str) -> None:
        """Define (or redefine, applied live to the ports using it) an nwfilter."""

    @abc.abstractmethod
    def undefine_filter(self, uri: str, name: str) -> None:
        """Remove an nwfilter no port uses any more; absent filters are fine."""

    @abc.abstractmethod
    def migrate(self, uri: str, name: str, dest_uri: str, live: bool, vouched_shared: bool = False) -> None:
        """Move a domain to another host (peer to peer); ``vouched_shared``: its disks are shared
        although libvirt cannot tell (skip libvirt's shared-storage check)."""

    @abc.abstractmethod
    def attach_disk(self, uri: str, name: str, disk: Disk, target: str) -> None:
        """Add ``disk`` on virtio ``target`` to the domain: live and in its definition when it runs, in
        its definition when it is stopped; already there is fine."""

    @abc.abstractmethod
    def detach_disk(self, uri: str, name: str, target: str, timeout_s: float) -> None:
        """Remove the disk on ``target`` (from the running guest first, waiting up to ``timeout_s`` for it
        to let go, then from the definition); absent is fine."""

    @abc.abstractmethod
    def resize_disk(self, uri: str, name: str, target: str, size_bytes: int) -> None:
        """Grow the disk on ``target`` of a running domain (the guest sees the new size)."""

    @abc.abstractmethod
    def disk_targets(self, uri: str, name: str) -> list[str]:
        """The targets of the disks in the domain's definition."""

    @abc.abstractmethod
    def backup_disk(self, uri: str, name: str, target: str, dest_path: str, timeout_s: float) -> None:
        """Copy the disk on ``target`` of a running domain as it is at this instant (crash-consistent,
        while the guest writes on) into the existing qcow2 file ``dest_path`` of the same size."""
