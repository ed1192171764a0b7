"""The public segment the routers' WAN sides sit on ("the outside world").

On a real site it is an existing host bridge (netns=None): nothing is created, veths are just
enslaved to it. On a single host (the default, the demo and the tests) it is a bridge inside a
namespace of its own carrying the gateway address of a documentation range, so no router or test
traffic ever reaches a real network.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from vrouter import _sh
from vrouter.errors import RouterError

DEFAULT_NETNS = "ivfarm-public"
DEFAULT_BRIDGE = "ivpub0"
DEFAULT_CIDR = "198.51.100.0/24"
DEFAULT_GATEWAY = "198.51.100.1"


@dataclass(frozen=True)
class PublicSegment:
    bridge: str = DEFAULT_BRIDGE
    netns: str | None = DEFAULT_NETNS
    cidr: str = DEFAULT_CIDR
    gateway: str = DEFAULT_GATEWAY

    def __post_init__(self) -> None:
        if not 1 <= len(self.bridge) <= 15:
            raise RouterError(f"public bridge name {self.bridge!r} must be 1-15 characters")
        try:
            net = ipaddress.IPv4Network(self.cidr)
            gw = ipaddress.IPv4Address(self.gateway)
        except ValueError as exc:
            raise RouterError(f"public segment: {exc}") from None
        if gw not in net:
            raise RouterError(f"public gateway {gw} is outside {net}")

    @property
    def prefix(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen

    # --- the segment itself ------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the namespace, bridge and gateway address if missing (idempotent).

        With netns=None only checks that the site bridge exists.
        """
        if self.netns is None:
            if not Path("/sys/class/net", self.bridge, "bridge").exists():
                raise RouterError(f"public bridge {self.bridge} does not exist on this host")
            return
        if not _sh.netns_exists(self.netns):
            _sh.netns_add(self.netns)
        _sh.run(_sh.ns_exec(self.netns, [
            "sysctl", "-q", "-w",
            "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
        ]))
        lines = ["link set lo up"]
        if not _sh.link_exists(self.bridge, self.netns):
            lines.append(f"link add {self.bridge} type bridge")
        lines += [
            f"address replace {self.gateway}/{self.prefix} dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        _sh.ip_batch(lines, self.netns)

    def destroy(self) -> None:
        """Remove what ensure() made (the namespace, and with it every veth end moved into it)."""
        if self.netns is not None:
            _sh.netns_delete(self.netns)

    def attach(self, veth: str) -> None:
        """Put a host-side veth end onto the public bridge (moving it into the namespace first)."""
        _sh.host_sysctl_disable_ipv6(veth)
        if self.netns is None:
            _sh.ip_batch([f"link set {veth} master {self.bridge} up"])
            return
        _sh.ip_batch([f"link set {veth} netns {self.netns}"])
        _sh.ip_batch([f"link set {veth} master {self.bridge} up"], self.netns)

    def holds(self, veth: str) -> bool:
        """True when ``veth`` is attached to this public segment (tells our routers from others')."""
        if self.netns is not None:
            return _sh.link_exists(veth, self.netns)
        master = Path("/sys/class/net", veth, "master")
        return master.exists() and master.resolve().name == self.bridge

    def detach(self, veth: str) -> None:
        """Delete a veth end attached with attach() (a missing one is fine)."""
        _sh.link_delete(veth, self.netns)
