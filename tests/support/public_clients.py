"""Outside users on a public segment: a namespace with one address, as a client of the elastic IPs."""
from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from vrouter import _sh
from vrouter.errors import RouterError
from vrouter.public import PublicSegment


def client_veth(name: str) -> str:
    """Host-side veth name of a public client (<= 15 characters whatever the namespace name)."""
    return f"ivc{zlib.crc32(name.encode()) & 0xFFFFFF:06x}"


def add_client(segment: PublicSegment, name: str, ip: str) -> None:
    """Create namespace ``name`` with eth0 = ``ip`` on the segment, default route via its gateway."""
    addr = ipaddress.IPv4Address(ip)
    if addr not in ipaddress.IPv4Network(segment.cidr) or str(addr) == segment.gateway:
        raise RouterError(f"public client address {ip} must be a free host of {segment.cidr}")
    if _sh.netns_exists(name):
        raise RouterError(f"network namespace {name} already exists")
    host_end = client_veth(name)
    _sh.netns_add(name)
    try:
        _sh.run(_sh.ns_exec(name, ["sysctl", "-q", "-w",
                                   "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]))
        _sh.ip_batch([f"link add {host_end} type veth peer name eth0 netns {name}"])
        segment.attach(host_end)
        _sh.ip_batch(["link set lo up", f"address add {ip}/{segment.prefix} dev eth0", "link set eth0 up",
                      f"route add default via {segment.gateway}"], name)
    except Exception:
        remove_client(segment, name)
        raise


def remove_client(segment: PublicSegment, name: str) -> None:
    """Remove a client namespace and its veth (missing pieces are fine)."""
    _sh.netns_delete(name)
    segment.detach(client_veth(name))


@contextmanager
def client_namespace(segment: PublicSegment, name: str, ip: str) -> Iterator[str]:
    """``with client_namespace(segment, "pubc1", "198.51.100.50") as ns:`` ... removed at exit."""
    add_client(segment, name, ip)
    try:
        yield name
    finally:
        remove_client(segment, name)
