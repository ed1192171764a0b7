"""Private addresses inside a farm's network: IPs from its CIDR, MACs ``02:00:`` + the IPv4 bytes."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivfarm.errors import InUse, InvalidInput, PoolExhausted
from ivfarm.store.models import Farm, Instance

# Addresses at the start of every farm network kept for the router and future services.
RESERVED_LOW = 9


@dataclass(frozen=True)
class NicAddress:
    """An instance's private IP and the MAC derived from it."""

    ip: str
    mac: str


def mac_for(ip: str) -> str:
    """The MAC of the NIC holding ``ip``: one farm's /24 is one block of locally administered MACs."""
    return "02:00:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(ip).packed)


def router_ip(cidr: str) -> str:
    """The farm router's LAN address: the first host of the network."""
    return str(next(ipaddress.IPv4Network(cidr).hosts()))


def allocate(session: Session, farm: Farm, count: int, wanted: str | None = None) -> list[NicAddress]:
    """The ``count`` lowest free addresses of the farm, or the one ``wanted`` (call with the farm row
    locked); InUse when ``wanted`` is taken, InvalidInput when it is no instance address of the farm."""
    network = ipaddress.IPv4Network(farm.cidr)
    taken = set(session.scalars(
        select(Instance.ip).where(Instance.farm_id == farm.id, Instance.state != "terminated", Instance.ip.is_not(None))
    ))
    if wanted is not None:
        usable = [str(h) for offset, h in enumerate(network.hosts()) if offset >= RESERVED_LOW]
        if count != 1 or wanted not in usable:
            raise InvalidInput(f"address {wanted} is not one an instance of {farm.cidr} can have "
                               f"({usable[0]} to {usable[-1]}, one instance)")
        if wanted in taken:
            raise InUse(f"Address {wanted} is in use.")
        return [NicAddress(wanted, mac_for(wanted))]
    result: list[NicAddress] = []
    for offset, host in enumerate(network.hosts()):
        if offset < RESERVED_LOW:
            continue
        ip = str(host)
        if ip not in taken:
            result.append(NicAddress(ip, mac_for(ip)))
            if len(result) == count:
                return result
    raise PoolExhausted(f"farm {farm.name} has no free address left in {farm.cidr}")
