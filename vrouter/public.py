"""The public segment the routers' WAN sides sit on ("the outside world").

On a real site it is an existing host bridge (netns=None): nothing is created, veths are just
enslaved to it. On a single host (the default, the demo and the tests) it is a bridge inside a
namespace of its own carrying the gateway address of a documentation range, so no router or test
traffic ever reaches a real network.
"""
from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
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

    # --- public clients (an outside user, for tests and the demo) -----------------------------
    def add_client(self, name: str, ip: str) -> None:
        """Create namespace `name` with eth0 = ip on the public segment, default via the gateway."""
        addr = ipaddress.IPv4Address(ip)
        if addr not in ipaddress.IPv4Network(self.cidr) or str(addr) == self.gateway:
            raise RouterError(f"public client address {ip} must be a free host of {self.cidr}")
        if _sh.netns_exists(name):
            raise RouterError(f"network namespace {name} already exists")
        host_end = client_veth(name)
        _sh.netns_add(name)
        try:
            _sh.run(_sh.ns_exec(name, [
                "sysctl", "-q", "-w",
                "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
            ]))
            _sh.ip_batch([f"link add {host_end} type veth peer name eth0 netns {name}"])
            self.attach(host_end)
            _sh.ip_batch([
                "link set lo up",
                f"address add {ip}/{self.prefix} dev eth0",
                "link set eth0 up",
                f"route add default via {self.gateway}",
            ], name)
        except Exception:
            self.remove_client(name)
            raise

    def remove_client(self, name: str) -> None:
        _sh.netns_delete(name)
        self.detach(client_veth(name))

    @contextmanager
    def client_namespace(self, name: str, ip: str) -> Iterator[str]:
        """`with segment.client_namespace("pubc1", "198.51.100.50") as ns:` ... removed at exit."""
        self.add_client(name, ip)
        try:
            yield name
        finally:
            self.remove_client(name)


def client_veth(name: str) -> str:
    """Host-side veth name of a public client (<= 15 characters whatever the namespace name)."""
    return f"ivc{zlib.crc32(name.encode()) & 0xFFFFFF:06x}"


@contextmanager
def client_namespace(segment: PublicSegment, name: str, ip: str) -> Iterator[str]:
    """Function form of PublicSegment.client_namespace."""
    with segment.client_namespace(name, ip) as ns:
        yield ns
