"""Errors the drivers raise; the services translate them into ivfarm's own (``ivfarm.errors``)."""
from __future__ import annotations


class DriverError(Exception):
    """Base of every error a driver raises."""


class HypervisorError(DriverError):
    """libvirt refused or failed an operation on a host."""


class HostUnreachable(HypervisorError):
    """A hypervisor URI cannot be opened."""


class StorageError(DriverError):
    """A pool, volume or disk operation failed."""


class NetworkError(DriverError):
    """A bridge, VLAN interface or libvirt network operation failed."""


class CacheError(DriverError):
    """A host's image cache could not be read or written over SSH."""


class DriverConfigError(DriverError):
    """A driver was given settings it cannot work with."""


class InvalidArgument(DriverError):
    """A value handed to a driver is malformed."""
