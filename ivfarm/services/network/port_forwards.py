"""Port forwards on a farm's router: router-public-IP:port -> private IP:port."""
from __future__ import annotations

import ipaddress

from sqlalchemy import select

from ivfarm.errors import AlreadyExists, InvalidInput, NotFound
from ivfarm.services.network.routers import sync_router
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Farm, PortForward

PROTOCOLS = ("tcp", "udp")


def _check(farm: Farm, protocol: str, public_port: int, private_ip: str, private_port: int) -> None:
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol must be tcp or udp, not {protocol!r}")
    for label, port in (("public port", public_port), ("private port", private_port)):
        if not 1 <= port <= 65535:
            raise InvalidInput(f"{label} {port} is not between 1 and 65535")
    try:
        address = ipaddress.IPv4Address(private_ip)
    except ValueError as exc:
        raise InvalidInput(f"invalid private address {private_ip!r}") from exc
    network = ipaddress.IPv4Network(farm.cidr)
    if address not in network or address in (network.network_address, network.broadcast_address):
        raise InvalidInput(f"{private_ip} is not a host address of farm {farm.name}'s network {farm.cidr}")


def add_forward(cloud: CloudContext, farm_id: int, protocol: str, public_port: int, private_ip: str, private_port: int) -> PortForward:
    """Forward a port of the router's public IP to a farm address."""
    with cloud.store.write() as session:
        farm = cloud.store.lock_farm(session, farm_id)
        _check(farm, protocol, public_port, private_ip, private_port)
        if session.scalar(select(PortForward).where(PortForward.farm_id == farm_id, PortForward.protocol == protocol,
                                                    PortForward.public_port == public_port)):
            raise AlreadyExists(f"{protocol} port {public_port} of farm {farm.name} is already forwarded")
        forward = PortForward(farm_id=farm_id, protocol=protocol, public_port=public_port,
                              private_ip=private_ip, private_port=private_port)
        session.add(forward)
    sync_router(cloud, farm_id)
    return forward


def remove_forward(cloud: CloudContext, farm_id: int, protocol: str, public_port: int) -> None:
    """Stop forwarding a port."""
    with cloud.store.write() as session:
        forward = session.scalar(select(PortForward).where(PortForward.farm_id == farm_id, PortForward.protocol == protocol,
                                                           PortForward.public_port == public_port))
        if forward is None:
            raise NotFound("port forward", f"{protocol}/{public_port}")
        session.delete(forward)
    sync_router(cloud, farm_id)


def list_forwards(cloud: CloudContext, farm_id: int) -> list[PortForward]:
    """The farm's port forwards."""
    with cloud.store.read() as session:
        return list(session.scalars(select(PortForward).where(PortForward.farm_id == farm_id)
                                    .order_by(PortForward.protocol, PortForward.public_port)))
