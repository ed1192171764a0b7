"""What ivfarm needs from the network: one isolated L2 segment per farm on every host that runs its VMs."""
from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence


def bridge_name(vlan: int) -> str:
    """The farm's bridge on every host (the same name everywhere, <= 15 characters)."""
    return f"ivbr{vlan}"


class FarmSegments(abc.ABC):
    """Creates and removes farm segments on hosts."""

    @abc.abstractmethod
    def ensure(self, uri: str, vlan: int) -> str:
        """Make sure the farm's segment exists on the host (idempotent); returns the bridge name."""

    @abc.abstractmethod
    def remove(self, uri: str, vlan: int) -> None:
        """Remove the farm's segment from the host; a missing one is fine."""

    @abc.abstractmethod
    def list_vlans(self, uri: str) -> list[int]:
        """VLAN ids of every farm segment present on the host (for reconcile)."""

    @abc.abstractmethod
    def set_peers(self, uri: str, vlan: int, peers: Mapping[str, Sequence[str]]) -> None:
        """Point the host's segment at exactly the other hosts that carry the farm: ``peers`` maps
        each one's underlay address to the MACs of the farm's VMs there (idempotent; ``{}`` leaves
        the segment with no remote entries). Backends whose segments learn (802.1Q) do nothing."""
