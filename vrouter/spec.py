"""The router spec: what one farm's virtual router must do, as frozen, validated, pure data.

Both backends (netns and openwrt) render the same spec. Construction validates everything a
backend relies on (addresses inside the right networks, unique leases and forwards, names safe
for dnsmasq and UCI), so a backend never has to second-guess it.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any

from vrouter.errors import SpecError

KEY_RE = re.compile(r"^[a-z0-9]{1,6}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
PROTOCOLS = ("tcp", "udp")


def _ipv4(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise SpecError(f"{what}: {value!r} is not an IP address") from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise SpecError(f"{what}: {value!r} is not an IPv4 address")
    return addr


def _port(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SpecError(f"{what}: {value!r} is not a port number (1-65535)")


@dataclass(frozen=True)
class Lease:
    """A static DHCP lease: this MAC always gets this IP (and this hostname, which may be empty)."""

    mac: str
    ip: str
    hostname: str = ""

    def __post_init__(self) -> None:
        mac = str(self.mac).lower()
        if not MAC_RE.match(mac):
            raise SpecError(f"lease: {self.mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        object.__setattr__(self, "mac", mac)
        _ipv4(self.ip, f"lease {mac}")
        if self.hostname and not HOSTNAME_RE.match(self.hostname):
            raise SpecError(
                f"lease {mac}: hostname {self.hostname!r} must be letters, digits and '-' "
                "(at most 63, not starting or ending with '-')"
            )


@dataclass(frozen=True)
class PortForward:
    """wan_ip:public_port/protocol is forwarded to private_ip:private_port on the farm LAN."""

    protocol: str
    public_port: int
    private_ip: str
    private_port: int

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SpecError(f"port forward: protocol {self.protocol!r} must be tcp or udp")
        _port(self.public_port, "port forward public port")
        _port(self.private_port, "port forward private port")
        _ipv4(self.private_ip, "port forward private IP")


@dataclass(frozen=True)
class RouterSpec:
    """Everything one farm router does; both backends render exactly this."""

    key: str
    farm: str
    lan_cidr: str
    lan_ip: str
    lan_bridge: str
    wan_ip: str
    wan_prefix: int
    wan_gateway: str
    dns_forwarders: tuple[str, ...]
    leases: tuple[Lease, ...] = ()
    forwards: tuple[PortForward, ...] = ()
    elastic_ip: str | None = None
    elastic_target: str | None = None
    egress_deny: tuple[str, ...] = ()  # networks the farm's traffic never reaches (site management)

    def __post_init__(self) -> None:
        # accept lists from callers, keep tuples (hashable, immutable)
        for name in ("dns_forwarders", "leases", "forwards", "egress_deny"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not KEY_RE.match(str(self.key)):
            raise SpecError(f"router key {self.key!r} must be 1-6 lowercase letters or digits")
        if not IFNAME_RE.match(str(self.lan_bridge)):
            raise SpecError(f"LAN bridge {self.lan_bridge!r} is not a valid interface name")
        try:
            lan = ipaddress.ip_network(self.lan_cidr, strict=True)
        except ValueError as exc:
            raise SpecError(f"LAN CIDR {self.lan_cidr!r}: {exc}") from None
        if not isinstance(lan, ipaddress.IPv4Network) or lan.prefixlen > 29:
            raise SpecError(f"LAN CIDR {self.lan_cidr!r} must be an IPv4 network of /29 or larger")
        lan_ip = _ipv4(self.lan_ip, "router LAN IP")
        self._check_host(lan_ip, "router LAN IP")

        wan_ip = _ipv4(self.wan_ip, "router WAN IP")
        if isinstance(self.wan_prefix, bool) or not isinstance(self.wan_prefix, int) or not 8 <= self.wan_prefix <= 32:
            raise SpecError(f"WAN prefix {self.wan_prefix!r} must be an integer from 8 to 32")
        wan_net = ipaddress.ip_interface(f"{wan_ip}/{self.wan_prefix}").network
        gateway = _ipv4(self.wan_gateway, "WAN gateway")
        if gateway == wan_ip:
            raise SpecError("WAN gateway must differ from the router's WAN IP")
        if self.wan_prefix < 31 and gateway not in wan_net:
            raise SpecError(f"WAN gateway {gateway} is outside the WAN network {wan_net}")
        if wan_net.overlaps(lan):
            raise SpecError(f"WAN network {wan_net} overlaps the LAN {lan}")
        for server in self.dns_forwarders:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise SpecError(f"DNS forwarder {server!r} is not an IP address") from None

        for network in self.egress_deny:
            try:
                ipaddress.IPv4Network(network, strict=True)
            except ValueError as exc:
                raise SpecError(f"egress deny network {network!r}: {exc}") from None

        macs: set[str] = set()
        ips: set[str] = set()
        for lease in self.leases:
            if not isinstance(lease, Lease):
                raise SpecError(f"leases must be Lease objects, got {lease!r}")
            self._check_host(ipaddress.IPv4Address(lease.ip), f"lease {lease.mac}")
            if ipaddress.IPv4Address(lease.ip) == lan_ip:
                raise SpecError(f"lease {lease.mac}: {lease.ip} is the router's own LAN address")
            if lease.mac in macs:
                raise SpecError(f"two leases for MAC {lease.mac}")
            if lease.ip in ips:
                raise SpecError(f"two leases for IP {lease.ip}")
            macs.add(lease.mac)
            ips.add(lease.ip)

        seen: set[tuple[str, int]] = set()
        for fwd in self.forwards:
            if not isinstance(fwd, PortForward):
                raise SpecError(f"forwards must be PortForward objects, got {fwd!r}")
            self._check_host(ipaddress.IPv4Address(fwd.private_ip), "port forward private IP")
            if (fwd.protocol, fwd.public_port) in seen:
                raise SpecError(f"two port forwards for {fwd.protocol}/{fwd.public_port}")
            seen.add((fwd.protocol, fwd.public_port))

        if self.elastic_ip is not None:
            eip = _ipv4(self.elastic_ip, "elastic IP")
            if eip == wan_ip or eip == gateway:
                raise SpecError(f"elastic IP {eip} is the router's WAN IP or the gateway")
            if eip not in wan_net or eip in (wan_net.network_address, wan_net.broadcast_address) and self.wan_prefix < 31:
                raise SpecError(
                    f"elastic IP {eip} must be a host address of the WAN network {wan_net} "
                    "(it is published there as an ARP alias)"
                )
        if self.elastic_target is not None:
            if self.elastic_ip is None:
                raise SpecError("elastic_target is set but the farm has no elastic_ip")
            target = _ipv4(self.elastic_target, "elastic IP target")
            self._check_host(target, "elastic IP target")
            if target == lan_ip:
                raise SpecError("the elastic IP cannot be bound to the router itself")

    def _check_host(self, addr: ipaddress.IPv4Address, what: str) -> None:
        lan = self.lan_network
        if addr not in lan or addr in (lan.network_address, lan.broadcast_address):
            raise SpecError(f"{what}: {addr} is not a host address of the LAN {lan}")

    # --- derived values the backends share -------------------------------------------------
    @property
    def lan_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.lan_cidr)

    @property
    def lan_prefix(self) -> int:
        return self.lan_network.prefixlen

    @property
    def eip_bound(self) -> bool:
        """True when the elastic IP is bound to a VM (then it is DNATed/SNATed and ARP-published)."""
        return self.elastic_ip is not None and self.elastic_target is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (round-trips through from_dict)."""
        data = asdict(self)
        data["dns_forwarders"] = list(self.dns_forwarders)
        data["egress_deny"] = list(self.egress_deny)
        data["leases"] = [asdict(lease) for lease in self.leases]
        data["forwards"] = [asdict(fwd) for fwd in self.forwards]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterSpec:
        data = dict(data)
        data["leases"] = tuple(Lease(**lease) for lease in data.get("leases", ()))
        data["forwards"] = tuple(PortForward(**fwd) for fwd in data.get("forwards", ()))
        data["dns_forwarders"] = tuple(data.get("dns_forwarders", ()))
        data["egress_deny"] = tuple(data.get("egress_deny", ()))
        return cls(**data)
