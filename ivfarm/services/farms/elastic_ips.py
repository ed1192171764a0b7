"""Public addresses: the pool, the farm's elastic IPs, and binding them 1:1 to instances."""
from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import AlreadyExists, InUse, InvalidState, NotFound, PoolExhausted
from ivfarm.services.compute.instances import get_instance
from ivfarm.services.network.routers import sync_router
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import Address, Farm, utcnow


def next_public_ips(cloud: CloudContext, session: Session, count: int) -> list[str]:
    """The ``count`` lowest addresses of the public range nobody holds (caller holds a write lock)."""
    first, last = (ipaddress.IPv4Address(a) for a in cloud.config.get("network.public.range"))
    taken = set(session.scalars(select(Address.public_ip)))
    free: list[str] = []
    current = first
    while current <= last and len(free) < count:
        if str(current) not in taken:
            free.append(str(current))
        current += 1
    if len(free) < count:
        raise PoolExhausted(f"the public address range {first}-{last} is exhausted")
    return free


def find_address(session: Session, farm_id: int, public_ip: str | None = None,
                 allocation_id: str | None = None) -> Address:
    """One of the farm's elastic IPs by address or allocation id (NotFound otherwise)."""
    query = select(Address).where(Address.farm_id == farm_id, Address.role == "elastic", Address.allocated.is_(True))
    if allocation_id:
        address = session.scalar(query.where(Address.allocation_id == allocation_id))
        if address is None:
            raise NotFound("allocation", allocation_id)
        return address
    if public_ip:
        address = session.scalar(query.where(Address.public_ip == public_ip))
        if address is None:
            raise NotFound("address", public_ip)
        return address
    address = session.scalar(query.order_by(Address.public_ip).limit(1))
    if address is None:
        raise NotFound("address", "(the farm's elastic IP)")
    return address


def allocate(cloud: CloudContext, farm_id: int) -> Address:
    """Give the farm an elastic IP: its reserved one if released, else a new one from the pool."""
    with cloud.store.write() as session:
        farm = cloud.store.lock_farm(session, farm_id)
        quotas.check_address(session, farm)
        address = session.scalar(
            select(Address).where(Address.farm_id == farm_id, Address.role == "elastic", Address.allocated.is_(False))
            .order_by(Address.public_ip).limit(1)
        )
        if address is None:
            address = Address(public_ip=next_public_ips(cloud, session, 1)[0], farm_id=farm_id, role="elastic")
            session.add(address)
        address.allocated = True
        address.allocation_id = ids.new_id("allocation")
        address.allocated_at = utcnow()
        return address


def release(cloud: CloudContext, farm_id: int, public_ip: str | None = None, allocation_id: str | None = None) -> None:
    """Give an elastic IP back (the farm's reserved one stays reserved to it)."""
    with cloud.store.write() as session:
        address = find_address(session, farm_id, public_ip, allocation_id)
        if address.instance_id:
            raise InUse(f"address {address.public_ip} is associated with {address.instance_id}: disassociate it first")
        address.allocated = False
        address.allocation_id = None
        address.allocated_at = None


def associate(cloud: CloudContext, farm_id: int, instance_id: str, public_ip: str | None = None,
              allocation_id: str | None = None, allow_reassociation: bool = True) -> Address:
    """Bind an elastic IP 1:1 to an instance of the same farm (DNAT + SNAT + ARP alias on the router)."""
    with cloud.store.write() as session:
        cloud.store.lock_farm(session, farm_id)
        instance = get_instance(session, instance_id, farm_id)
        if instance.state not in ("pending", "running", "stopping", "stopped"):
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        address = find_address(session, farm_id, public_ip, allocation_id)
        if address.instance_id and address.instance_id != instance_id and not allow_reassociation:
            raise AlreadyExists(f"address {address.public_ip} is already associated with {address.instance_id}")
        for other in session.scalars(select(Address).where(Address.instance_id == instance_id)):
            if other.public_ip != address.public_ip:
                other.instance_id = None
                other.association_id = None
        address.instance_id = instance_id
        address.association_id = ids.new_id("association")
    sync_router(cloud, farm_id)
    return address


def disassociate(cloud: CloudContext, farm_id: int, public_ip: str | None = None, association_id: str | None = None) -> Address:
    """Unbind an elastic IP from its instance."""
    with cloud.store.write() as session:
        if association_id:
            address = session.scalar(select(Address).where(Address.farm_id == farm_id,
                                                           Address.association_id == association_id))
            if address is None:
                raise NotFound("association", association_id)
        else:
            address = find_address(session, farm_id, public_ip)
        address.instance_id = None
        address.association_id = None
    sync_router(cloud, farm_id)
    return address


def farm_addresses(session: Session, farm: Farm) -> list[Address]:
    """The farm's allocated elastic IPs."""
    return list(session.scalars(select(Address).where(
        Address.farm_id == farm.id, Address.role == "elastic", Address.allocated.is_(True)).order_by(Address.public_ip)))
