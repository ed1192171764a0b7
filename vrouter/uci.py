"""Render a RouterSpec as OpenWrt UCI `network`, `dhcp` and `firewall` packages with netjsonconfig.

`network` comes from a NetJSON DeviceConfiguration (interfaces with static addresses, the WAN
gateway, DNS servers). netjsonconfig 1.x has no converter of its own for `dhcp` and `firewall`,
so those are passed as netjsonconfig's "additional packages" (blocks with `config_name` and
`config_value`), which its OpenWrt backend renders and parses as UCI sections.

Choices worth knowing:
- DNS forwarders go on the `wan` interface (`option dns`), netjsonconfig's place for them; the
  router's dnsmasq reads them from there (OpenWrt's resolv.conf.auto), as on a stock OpenWrt.
- DHCP is static-only (`dynamicdhcp '0'`): a MAC without a `host` section gets no address.
- The elastic IP, while bound, is a `/32` in wan's `ipaddr` list (ARP alias), a DNAT `redirect`
  and a fw4 `nat` SNAT section (fw4 puts user `nat` rules before the zone's masquerade).
- Port forwards match only the router's own WAN address (`src_dip`), not the elastic IP.
- The tenant never reaches the router: the lan zone rejects input except DHCP, DNS and ping;
  SSH is accepted on wan only from `ssh_allow_from` (the controller's management address or
  networks), which may not hold the router's own WAN address or elastic IP (farm traffic leaves from
  there); farm traffic to the site's `egress_deny` networks is rejected.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from netjsonconfig import OpenWrt
from netjsonconfig.exceptions import ValidationError

from vrouter.errors import RouterError
from vrouter.spec import RouterSpec

PACKAGES = ("network", "dhcp", "firewall")
LEASE_FILE = "/tmp/dhcp.leases"


def netjson(
    spec: RouterSpec,
    *,
    lan_device: str = "eth0",
    wan_device: str = "eth1",
    ssh_allow_from: Sequence[str] = (),
    lease_time: str = "12h",
) -> dict[str, Any]:
    """The NetJSON DeviceConfiguration (plus dhcp/firewall packages) for the spec; SSH is accepted
    on wan from the ``ssh_allow_from`` networks only (none: no SSH at all)."""
    _check_ssh_allow_from(spec, ssh_allow_from)
    wan_addresses: list[dict[str, Any]] = [{
        "proto": "static", "family": "ipv4",
        "address": spec.wan_ip, "mask": spec.wan_prefix, "gateway": spec.wan_gateway,
    }]
    if spec.eip_bound:
        wan_addresses.append({"proto": "static", "family": "ipv4", "address": spec.elastic_ip, "mask": 32})
    wan: dict[str, Any] = {"name": wan_device, "network": "wan", "type": "ethernet", "addresses": wan_addresses}
    if spec.dns_forwarders:
        # per-interface, not top-level dns_servers: netjsonconfig would put those on every
        # static interface (lan too) and then fail to parse its own output (duplicates)
        wan["dns"] = " ".join(spec.dns_forwarders)
    return {
        "interfaces": [
            {
                "name": lan_device, "network": "lan", "type": "ethernet",
                "addresses": [{
                    "proto": "static", "family": "ipv4",
                    "address": spec.lan_ip, "mask": spec.lan_prefix,
                }],
            },
            wan,
        ],
        "dhcp": _dhcp(spec, lease_time),
        "firewall": _firewall(spec, list(ssh_allow_from)),
    }


def _check_ssh_allow_from(spec: RouterSpec, networks: Sequence[str]) -> None:
    """Refuse management networks that hold farm addresses: every farm's traffic leaves from the
    public network (its router's WAN address or elastic IP), so a network holding this router's
    own addresses would open its SSH to the other farms."""
    farm_addresses = [ipaddress.IPv4Address(a) for a in (spec.wan_ip, spec.elastic_ip) if a]
    for text in networks:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise RouterError(f"router {spec.key}: ssh_allow_from {text!r}: {exc}") from None
        inside = [str(a) for a in farm_addresses if a in network]
        if inside:
            raise RouterError(
                f"router {spec.key}: ssh_allow_from {text} holds {', '.join(inside)}, where farm traffic "
                "leaves from: allow the controller's management address or network only"
            )


def render_uci(spec: RouterSpec, **options: Any) -> dict[str, str]:
    """{"network": text, "dhcp": text, "firewall": text}: the files for /etc/config/."""
    try:
        text = OpenWrt(netjson(spec, **options)).render()
    except ValidationError as exc:
        raise RouterError(f"router {spec.key}: netjsonconfig rejected the configuration: {exc}") from exc
    packages = split_packages(text)
    missing = [p for p in PACKAGES if p not in packages]
    if missing:
        raise RouterError(f"router {spec.key}: rendering produced no {', '.join(missing)} package")
    return {name: packages[name] for name in PACKAGES}


def split_packages(text: str) -> dict[str, str]:
    """Split netjsonconfig's `package NAME` output into {NAME: file content} (as its tar export does)."""
    result: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("package "):
            if name is not None:
                result[name] = _file_text(lines)
            name, lines = line.split(None, 1)[1].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        result[name] = _file_text(lines)
    return result


def join_packages(files: dict[str, str]) -> str:
    """The inverse of split_packages: text netjsonconfig's parser reads (`OpenWrt(native=...)`)."""
    return "".join(f"package {name}\n\n{content}\n" for name, content in files.items())


def _file_text(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n") + "\n"


def _dhcp(spec: RouterSpec, lease_time: str) -> list[dict[str, Any]]:
    lan = spec.lan_network
    start = int(ipaddress.IPv4Address(spec.lan_ip)) - int(lan.network_address) + 1
    limit = int(lan.broadcast_address) - int(lan.network_address) - start
    blocks: list[dict[str, Any]] = [
        {
            "config_name": "dnsmasq", "config_value": "dnsmasq",
            "authoritative": True, "boguspriv": True, "domainneeded": True,
            "leasefile": LEASE_FILE, "localservice": True,
        },
        {
            "config_name": "dhcp", "config_value": "lan",
            "interface": "lan", "start": start, "limit": limit, "leasetime": lease_time,
            "dynamicdhcp": False,
        },
        {"config_name": "dhcp", "config_value": "wan", "interface": "wan", "ignore": True},
    ]
    for lease in sorted(spec.leases, key=lambda le: le.mac):
        host: dict[str, Any] = {
            "config_name": "host", "config_value": "host_" + lease.mac.replace(":", ""),
            "mac": lease.mac, "ip": lease.ip,
        }
        if lease.hostname:
            host["name"] = lease.hostname
        blocks.append(host)
    return blocks


def _firewall(spec: RouterSpec, ssh_allow_from: list[str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {
            "config_name": "defaults", "config_value": "defaults",
            "input": "REJECT", "output": "ACCEPT", "forward": "REJECT",
            "synflood_protect": True, "drop_invalid": True,
        },
        {
            "config_name": "zone", "config_value": "lan", "name": "lan", "network": ["lan"],
            "input": "REJECT", "output": "ACCEPT", "forward": "REJECT",
        },
        {
            "config_name": "zone", "config_value": "wan", "name": "wan", "network": ["wan"],
            "input": "DROP", "output": "ACCEPT", "forward": "DROP", "masq": True, "mtu_fix": True,
        },
        {"config_name": "forwarding", "config_value": "lan_wan", "src": "lan", "dest": "wan"},
        *([{
            "config_name": "rule", "config_value": "lan_egress_deny", "name": "Deny-site-management",
            "family": "ipv4", "src": "lan", "dest": "wan", "dest_ip": list(spec.egress_deny), "proto": "all",
            "target": "REJECT",
        }] if spec.egress_deny else []),
        _rule("lan_dhcp", "Allow-DHCP", "lan", "udp", dest_port="67"),
        _rule("lan_dns", "Allow-DNS", "lan", "tcp udp", dest_port="53"),
        _rule("lan_ping", "Allow-Ping", "lan", "icmp", icmp_type="echo-request"),
    ]
    if ssh_allow_from:
        blocks.append(_rule("wan_ssh", "Allow-SSH-management", "wan", "tcp", dest_port="22", src_ip=ssh_allow_from))
    for fwd in sorted(spec.forwards, key=lambda f: (f.protocol, f.public_port)):
        blocks.append({
            "config_name": "redirect", "config_value": f"fwd_{fwd.protocol}_{fwd.public_port}",
            "name": f"Forward-{fwd.protocol}-{fwd.public_port}", "family": "ipv4", "target": "DNAT",
            "src": "wan", "src_dip": spec.wan_ip, "src_dport": str(fwd.public_port), "proto": fwd.protocol,
            "dest": "lan", "dest_ip": fwd.private_ip, "dest_port": str(fwd.private_port),
        })
    if spec.eip_bound:
        blocks += [
            {
                "config_name": "redirect", "config_value": "eip_dnat",
                "name": "Elastic-IP-in", "family": "ipv4", "target": "DNAT", "proto": "all",
                "src": "wan", "src_dip": spec.elastic_ip, "dest": "lan", "dest_ip": spec.elastic_target,
            },
            {
                "config_name": "nat", "config_value": "eip_snat",
                "name": "Elastic-IP-out", "family": "ipv4", "target": "SNAT", "proto": "all",
                "src": "wan", "src_ip": spec.elastic_target, "snat_ip": spec.elastic_ip,
            },
        ]
    return blocks


def _rule(section: str, name: str, src: str, proto: str, **options: Any) -> dict[str, Any]:
    return {
        "config_name": "rule", "config_value": section, "name": name, "family": "ipv4",
        "src": src, "proto": proto, "target": "ACCEPT", **options,
    }
