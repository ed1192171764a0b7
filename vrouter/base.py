"""The interface every router backend implements (netns, openwrt)."""
from __future__ import annotations

from abc import ABC, abstractmethod

from vrouter.spec import RouterSpec


class RouterBackend(ABC):
    """One farm's virtual router, built from a RouterSpec.

    Every method raises RouterError (or a subclass) on failure, never a bare OSError or
    CalledProcessError, so the caller has one exception type to handle.
    """

    name: str
    serves_metadata: bool
    """Whether the router answers EC2 metadata requests on 169.254.169.254 (publish_metadata)."""

    @abstractmethod
    def create(self, spec: RouterSpec) -> None:
        """Build the whole router; on any failure remove what was made and raise RouterError."""

    @abstractmethod
    def apply(self, spec: RouterSpec) -> None:
        """Idempotently bring leases, port forwards and the elastic-IP binding to the spec,
        without restarting the router."""

    @abstractmethod
    def destroy(self, key: str) -> None:
        """Remove everything of that router; missing pieces are fine."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the router is present on this machine (or its VM is known)."""

    @abstractmethod
    def list_keys(self) -> list[str]:
        """Keys of this backend's routers present on the machine (reconcile finds orphans here)."""

    @abstractmethod
    def leases(self, key: str) -> list[tuple[str, str]]:
        """(mac, ip) of the active DHCP leases."""

    @abstractmethod
    def publish_metadata(self, key: str, records: dict[str, dict]) -> None:
        """Replace everything the router's metadata service answers: private IP -> record
        (``{"meta-data": tree, "user-data": base64 or None}``, see vrouter.imds), and make sure
        the service runs. Backends whose serves_metadata is False raise RouterError."""
