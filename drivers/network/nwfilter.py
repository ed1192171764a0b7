"""A VM port's libvirt nwfilter: anti-spoofing plus stateful security-group rules.

The filter references the anti-spoofing filter (its ``IP`` parameter comes from the interface),
accepts replies (conntrack ESTABLISHED,RELATED), DHCP, DNS and metadata towards the farm router,
then the allowed new connections in each direction, and drops everything else. Redefining the
filter under the same name updates every running interface that uses it.
"""
from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

METADATA_IP = "169.254.169.254"
_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "-1": "all"}


@dataclass(frozen=True)
class FilterRule:
    """New traffic allowed into (``in``) or out of (``out``) the VM, from or to ``peer`` (a CIDR)."""

    direction: str  # in | out
    protocol: str  # tcp | udp | icmp | -1
    from_port: int  # ICMP: type; -1 any
    to_port: int  # ICMP: code; -1 any
    peer: str


def _rule(parent: ET.Element, action: str, direction: str, priority: int, protocol: str,
          attributes: dict[str, str]) -> None:
    rule = ET.SubElement(parent, "rule", action=action, direction=direction, priority=str(priority))
    ET.SubElement(rule, protocol, attributes)


def _match(rule: FilterRule) -> dict[str, str]:
    network = ipaddress.IPv4Network(rule.peer, strict=False)
    side = "src" if rule.direction == "in" else "dst"
    attributes = {f"{side}ipaddr": str(network.network_address), f"{side}ipmask": str(network.prefixlen)}
    if rule.protocol in ("tcp", "udp"):
        attributes.update(dstportstart=str(rule.from_port), dstportend=str(rule.to_port))
    elif rule.protocol == "icmp":
        if rule.from_port != -1:
            attributes["type"] = str(rule.from_port)
        if rule.to_port != -1:
            attributes["code"] = str(rule.to_port)
    attributes["state"] = "NEW"
    return attributes


def render_filter(name: str, base: str, router_ip: str, rules: list[FilterRule]) -> str:
    """The XML of the filter ``name``: ``base`` (anti-spoofing) and the rules."""
    root = ET.Element("filter", name=name, chain="root")
    ET.SubElement(root, "filterref", filter=base)
    _rule(root, "accept", "inout", -500, "all", {"state": "ESTABLISHED,RELATED"})
    _rule(root, "accept", "out", -400, "udp", {"dstportstart": "67", "dstportend": "67"})
    _rule(root, "accept", "in", -400, "udp", {"srcportstart": "67", "srcportend": "67", "dstportstart": "68",
                                              "dstportend": "68"})
    for protocol in ("udp", "tcp"):
        _rule(root, "accept", "out", -400, protocol, {"dstipaddr": router_ip, "dstportstart": "53",
                                                      "dstportend": "53"})
    _rule(root, "accept", "out", -400, "tcp", {"dstipaddr": METADATA_IP, "dstportstart": "80", "dstportend": "80"})
    for rule in rules:
        _rule(root, "accept", rule.direction, 100, _PROTOCOLS[rule.protocol], _match(rule))
    _rule(root, "drop", "inout", 900, "all", {})
    return ET.tostring(root, encoding="unicode")
