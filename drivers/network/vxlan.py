"""Farm segments as VXLAN: a bridge per farm on each host that carries it, joined by one VNI.

On every such host the farm's bridge ``ivbr<vlan>`` (no host address, no IPv6) holds the VMs' taps
and the link ``ivvx<vlan>`` (``type vxlan id <vni> local <underlay> dstport <port> nolearning``).
No multicast: flooding is head-end replication through the all-zero FDB entries, one per peer host,
and each remote VM's MAC has a static entry toward its host (``set_peers``, which the services call
whenever the farm's VMs come, go or move). Commands run through each host's ``HostShell``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from drivers.errors import NetworkError
from drivers.network.base import FarmSegments, bridge_name
from drivers.network.host_shell import HostShell

FLOOD_MAC = "00:00:00:00:00:00"
VXLAN_PORT = 4789
MAX_VNI = 2**24 - 1
_LINK_RE = re.compile(r"^ivvx(\d+)$")


def vxlan_name(vlan: int) -> str:
    """The farm's VXLAN link on every host (<= 15 characters)."""
    return f"ivvx{vlan}"


@dataclass(frozen=True)
class HostLink:
    """How the segments reach a host: its shell and its underlay (VTEP) address."""

    shell: HostShell
    underlay: str


class VxlanSegments(FarmSegments):
    """One VNI (``vni_base + vlan``) per farm, static FDB toward exactly the hosts that carry it."""

    def __init__(self, host_link: Callable[[str], HostLink], vni_base: int, port: int = VXLAN_PORT) -> None:
        self._host_link = host_link
        self.vni_base = vni_base
        self.port = port

    def vni(self, vlan: int) -> int:
        """The farm's VXLAN network identifier."""
        vni = self.vni_base + vlan
        if not 0 < vni <= MAX_VNI:
            raise NetworkError(f"VNI {vni} (base {self.vni_base} + VLAN {vlan}) is outside 1-{MAX_VNI}")
        return vni

    def ensure(self, uri: str, vlan: int) -> str:
        host = self._host_link(uri)
        bridge, vx = bridge_name(vlan), vxlan_name(vlan)
        lines = []
        if not _exists(host.shell, bridge):
            lines.append(f"link add {bridge} type bridge stp_state 0 forward_delay 0")
        if not _exists(host.shell, vx):
            lines.append(f"link add {vx} type vxlan id {self.vni(vlan)} local {host.underlay} "
                         f"dstport {self.port} nolearning")
        host.shell.batch(lines)
        for ifname in (bridge, vx):
            host.shell.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{ifname}.disable_ipv6=1"])
        host.shell.batch([f"link set {vx} master {bridge}", f"link set {vx} up", f"link set {bridge} up"])
        return bridge

    def remove(self, uri: str, vlan: int) -> None:
        shell = self._host_link(uri).shell
        host_links = [name for name in (vxlan_name(vlan), bridge_name(vlan)) if _exists(shell, name)]
        shell.batch([f"link del {name}" for name in host_links], force=True)

    def list_vlans(self, uri: str) -> list[int]:
        out = self._host_link(uri).shell.run(["ip", "-j", "link", "show", "type", "vxlan"])
        names = [link["ifname"] for link in json.loads(out or "[]")]
        return sorted(int(m.group(1)) for n in names if (m := _LINK_RE.match(n)))

    def set_peers(self, uri: str, vlan: int, peers: Mapping[str, Sequence[str]]) -> None:
        shell = self._host_link(uri).shell
        vx = vxlan_name(vlan)
        if not _exists(shell, vx):
            if peers:
                raise NetworkError(f"{shell}: farm segment {vx} does not exist (ensure it first)")
            return
        want_flood = set(peers)
        want_mac = {mac.lower(): peer for peer, macs in peers.items() for mac in macs}
        have_flood, have_mac = _remote_entries(shell, vx)
        lines = [f"fdb append {FLOOD_MAC} dev {vx} dst {peer}" for peer in sorted(want_flood - have_flood)]
        lines += [f"fdb replace {mac} dev {vx} dst {peer}" for mac, peer in sorted(want_mac.items())
                  if have_mac.get(mac) != {peer}]
        lines += [f"fdb del {FLOOD_MAC} dev {vx} dst {peer}" for peer in sorted(have_flood - want_flood)]
        lines += [f"fdb del {mac} dev {vx}" for mac in sorted(set(have_mac) - set(want_mac))]
        shell.batch(lines, tool="bridge")


def _exists(shell: HostShell, ifname: str) -> bool:
    return bool(shell.run(["ip", "-o", "link", "show", "dev", ifname], check=False).strip())


def _remote_entries(shell: HostShell, vx: str) -> tuple[set[str], dict[str, set[str]]]:
    """The link's FDB entries toward other hosts: flood destinations, and each MAC's destinations."""
    flood: set[str] = set()
    macs: dict[str, set[str]] = {}
    for entry in json.loads(shell.run(["bridge", "-j", "fdb", "show", "dev", vx]) or "[]"):
        if "dst" not in entry:
            continue  # the bridge's own entries for the port
        if entry["mac"] == FLOOD_MAC:
            flood.add(entry["dst"])
        else:
            macs.setdefault(entry["mac"].lower(), set()).add(entry["dst"])
    return flood, macs
