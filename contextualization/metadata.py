"""The documents a guest reads about itself: NoCloud meta-data, network config v2, EC2 metadata."""
from __future__ import annotations

import ipaddress
import re

from contextualization.errors import ContextError

_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class PublicKeyEntry(dict):
    """The ``public-keys/<index>/`` directory of the EC2 tree; remembers the key pair's name."""

    def __init__(self, name: str, key: str) -> None:
        super().__init__({"openssh-key": key})
        self.name = name


def _check_hostname(hostname: str) -> str:
    if not isinstance(hostname, str) or len(hostname) > 253 or not _HOSTNAME.match(hostname):
        raise ContextError(f"invalid hostname {hostname!r}")
    return hostname


def _check_mac(mac: str) -> str:
    normal = str(mac).lower()
    if not _MAC.match(normal):
        raise ContextError(f"invalid MAC address {mac!r} (expected six hex pairs joined by ':')")
    return normal


def _check_keys(public_keys: dict[str, str] | None) -> dict[str, str]:
    keys = dict(public_keys or {})
    for name, key in keys.items():
        if not isinstance(key, str) or not key.strip() or "\n" in key.strip():
            raise ContextError(f"public key {name!r} must be one line of OpenSSH text")
    return {name: key.strip() for name, key in keys.items()}


def meta_data(
    instance_id: str, local_hostname: str, public_keys: dict[str, str] | None = None, **extra: object
) -> dict:
    """Return NoCloud meta-data: instance-id, local-hostname and public-keys as {name: key}.

    Extra keyword arguments are added with ``_`` turned into ``-`` (``availability_zone=`` gives
    ``availability-zone``).
    """
    if not isinstance(instance_id, str) or not instance_id.strip():
        raise ContextError("instance-id must be a non-empty string")
    doc: dict = {"instance-id": instance_id, "local-hostname": _check_hostname(local_hostname)}
    keys = _check_keys(public_keys)
    if keys:
        doc["public-keys"] = keys
    doc.update({name.replace("_", "-"): value for name, value in extra.items()})
    return doc


def network_config_v2(
    mac: str, address: str, prefix: int, gateway: str, nameservers: list[str], *, name: str = "eth0"
) -> dict:
    """Return a network config v2 document giving the NIC with ``mac`` a static address.

    The interface is matched by MAC and named ``name``; the default route goes via ``gateway``.
    """
    try:
        interface = ipaddress.ip_interface(f"{address}/{int(prefix)}")
        via = ipaddress.ip_address(gateway)
        servers = [str(ipaddress.ip_address(server)) for server in nameservers]
    except (ValueError, TypeError) as exc:
        raise ContextError(f"invalid network settings: {exc}") from exc
    if via not in interface.network:
        raise ContextError(f"gateway {via} is outside {interface.network}")
    ethernet: dict = {
        "match": {"macaddress": _check_mac(mac)},
        "set-name": name,
        "addresses": [str(interface)],
        "routes": [{"to": "default", "via": str(via)}],
    }
    if servers:
        ethernet["nameservers"] = {"addresses": servers}
    return {"version": 2, "ethernets": {name: ethernet}}


def ec2_metadata_tree(
    instance_id: str,
    hostname: str,
    local_ipv4: str,
    public_ipv4: str | None,
    public_keys: dict[str, str] | None,
    instance_type: str,
    ami_id: str,
    reservation_id: str,
    availability_zone: str,
    mac: str,
) -> dict:
    """Return the ``/latest/meta-data/`` tree of EC2's instance metadata service.

    Absent values (no public IPv4, no key pair) leave their entries out, as EC2 does.
    """
    tree: dict = {
        "ami-id": ami_id,
        "hostname": _check_hostname(hostname),
        "instance-id": instance_id,
        "instance-type": instance_type,
        "local-hostname": hostname,
        "local-ipv4": local_ipv4,
        "mac": _check_mac(mac),
        "placement": {"availability-zone": availability_zone},
    }
    if public_ipv4:
        tree["public-ipv4"] = public_ipv4
    keys = _check_keys(public_keys)
    if keys:
        tree["public-keys"] = {
            str(index): PublicKeyEntry(name, key) for index, (name, key) in enumerate(keys.items())
        }
    tree["reservation-id"] = reservation_id
    return tree


def _listing(directory: dict) -> str:
    lines = []
    for key, value in directory.items():
        if isinstance(value, PublicKeyEntry):
            lines.append(f"{key}={value.name}")
        elif isinstance(value, dict):
            lines.append(f"{key}/")
        else:
            lines.append(str(key))
    return "\n".join(lines)


def render_metadata_path(tree: dict, path: str) -> str | None:
    """Answer a metadata path as EC2's IMDS does, or ``None`` when nothing lives there.

    A directory lists its children one per line (sub-directories end in ``/``, public keys read
    ``0=keyname``); a leaf returns its value (a list leaf one item per line).
    """
    node: object = tree
    for segment in (part for part in path.split("/") if part):
        if not isinstance(node, dict) or segment not in node:
            return None
        node = node[segment]
    if isinstance(node, dict):
        return _listing(node)
    if isinstance(node, (list, tuple)):
        return "\n".join(str(item) for item in node)
    return str(node)
