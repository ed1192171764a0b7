"""Farm segments as isolated libvirt networks: a bridge with no host IP, no DHCP, no forwarding.

libvirt creates the bridge on whichever host the URI names, so this works for remote hosts and
the test driver alike. With a trunk interface configured, the farm's 802.1Q sub-interface
(``<trunk>.<vlan>``) is enslaved to the bridge so the segment spans hosts.
"""
from __future__ import annotations

import re
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence

import libvirt

from drivers.errors import NetworkError
from drivers.network.base import FarmSegments, bridge_name
from drivers.uris import uri_is_local

NETWORK_PREFIX = "ivfarm-net-"
_DEFINING = threading.Lock()
_NAME_RE = re.compile(rf"^{NETWORK_PREFIX}(\d+)$")


def _network_xml(vlan: int) -> str:
    net = ET.Element("network")
    ET.SubElement(net, "name").text = f"{NETWORK_PREFIX}{vlan}"
    ET.SubElement(net, "bridge", name=bridge_name(vlan), stp="off", delay="0")
    return ET.tostring(net, encoding="unicode")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


class LibvirtBridgeSegments(FarmSegments):
    """One libvirt network ``ivfarm-net-<vlan>`` per farm and host."""

    def __init__(self, connect: Callable[[str], libvirt.virConnect], trunk_interface: str | None = None) -> None:
        self._connect = connect
        self.trunk = trunk_interface

    def ensure(self, uri: str, vlan: int) -> str:
        conn = self._connect(uri)
        name = f"{NETWORK_PREFIX}{vlan}"
        with _DEFINING:  # VMs of one farm provisioned at once all ensure its segment
            try:
                net = conn.networkLookupByName(name)
            except libvirt.libvirtError:
                try:
                    net = conn.networkDefineXML(_network_xml(vlan))
                except libvirt.libvirtError as exc:
                    net = self._lookup(conn, name)  # another process defined it meanwhile
                    if net is None:
                        raise NetworkError(f"cannot define farm network {name} on {uri}: "
                                           f"{exc.get_error_message()}") from exc
            try:
                if not net.isActive():
                    net.create()
                net.setAutostart(1)
            except libvirt.libvirtError as exc:
                if not net.isActive():
                    raise NetworkError(f"cannot start farm network {name} on {uri}: {exc.get_error_message()}") from exc
        bridge = bridge_name(vlan)
        if uri_is_local(uri) and not uri.startswith("test:"):
            self._harden_local_bridge(bridge, vlan)
        return bridge

    @staticmethod
    def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
        try:
            return conn.networkLookupByName(name)
        except libvirt.libvirtError:
            return None

    def _harden_local_bridge(self, bridge: str, vlan: int) -> None:
        """No IPv6 (hence no host address at all) on the bridge; the trunk's VLAN in it when configured."""
        subprocess.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{bridge}.disable_ipv6=1"], check=False,
                       capture_output=True)
        if self.trunk:
            vif = f"{self.trunk}.{vlan}"
            if _ip("link", "show", vif).returncode != 0:
                result = _ip("link", "add", "link", self.trunk, "name", vif, "type", "vlan", "id", str(vlan))
                if result.returncode != 0:
                    raise NetworkError(f"cannot create VLAN interface {vif}: {result.stderr.strip()}")
            for args in (("link", "set", vif, "master", bridge), ("link", "set", vif, "up")):
                result = _ip(*args)
                if result.returncode != 0:
                    raise NetworkError(f"cannot attach {vif} to {bridge}: {result.stderr.strip()}")

    def remove(self, uri: str, vlan: int) -> None:
        conn = self._connect(uri)
        try:
            net = conn.networkLookupByName(f"{NETWORK_PREFIX}{vlan}")
        except libvirt.libvirtError:
            return
        try:
            if net.isActive():
                net.destroy()
            net.undefine()
        except libvirt.libvirtError as exc:
            raise NetworkError(f"cannot remove farm network on {uri}: {exc.get_error_message()}") from exc
        if self.trunk and uri_is_local(uri) and not uri.startswith("test:"):
            _ip("link", "del", f"{self.trunk}.{vlan}")

    def set_peers(self, uri: str, vlan: int, peers: Mapping[str, Sequence[str]]) -> None:
        """Nothing to do: a bridge on one host, or an 802.1Q trunk, whose switches learn."""

    def list_vlans(self, uri: str) -> list[int]:
        try:
            names = [net.name() for net in self._connect(uri).listAllNetworks()]
        except libvirt.libvirtError as exc:
            raise NetworkError(f"cannot list networks on {uri}: {exc.get_error_message()}") from exc
        return sorted(int(m.group(1)) for n in names if (m := _NAME_RE.match(n)))
