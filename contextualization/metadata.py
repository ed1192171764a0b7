"""The documents a guest reads about itself: NoCloud meta-data, network config v2, EC2 metadata.

The EC2 tree is plain JSON data; the farm router's metadata service (vrouter.imds) serves it.
"""
from __future__ import annotations

import ipaddress
import re

from contextualization.errors import ContextError

_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


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
    security_groups: tuple[str, ...] = (),
) -> dict:
    """Return the ``/latest/meta-data/`` tree of EC2's instance metadata service, as JSON data.

    Absent values leave their entries out, as EC2 does: ``public-ipv4`` exists only when the
    instance has a public address (here: the farm's elastic IP bound to it), ``public-keys``
    only with a key pair; ``security-groups`` lists the names of the instance's groups, one a line.
    Key ``i`` of ``public_keys`` is the entry ``"<i>=<name>":
    {"openssh-key": key}``, which IMDS lists as ``i=name`` and serves at ``public-keys/i/``.
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
            f"{index}={name}": {"openssh-key": key} for index, (name, key) in enumerate(keys.items())
        }
    tree["reservation-id"] = reservation_id
    if security_groups:
        tree["security-groups"] = "\n".join(security_groups)
    return tree
