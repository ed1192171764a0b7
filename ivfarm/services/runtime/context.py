"""What services may use of the cloud they run in: configuration, store and the drivers' interfaces.

The composition root (``ivfarm.cloud.Cloud``) builds each backend once and satisfies this protocol;
services are typed against it, so they call only what the driver interfaces declare.
"""
from __future__ import annotations

from typing import Protocol

from drivers.hypervisor.base import Hypervisor
from drivers.network.base import FarmSegments
from drivers.storage.base import Storage
from drivers.storage.files import HostFiles
from ivfarm.config import Config
from ivfarm.store import Store
from vrouter.base import RouterBackend
from vrouter.public import PublicSegment


class CloudContext(Protocol):
    """The cloud as a service sees it."""

    config: Config
    store: Store
    cloud_id: str
    hypervisor: Hypervisor
    segments: FarmSegments
    seeds: HostFiles
    consoles: HostFiles
    public_segment: PublicSegment

    def prepare_state_dir(self) -> None:
        """Create the state directory tree."""
        ...

    def storage(self, host_class: str) -> Storage:
        """The storage backend of a hypervisor class."""
        ...

    def router_backend(self, name: str) -> RouterBackend | None:
        """The router backend called ``name``; None for ``none`` (farms without a router)."""
        ...
