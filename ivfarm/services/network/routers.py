"""The farm's virtual router: its spec from the store, its backend, and serialised updates."""
from __future__ import annotations

import contextlib
import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from drivers.network.base import bridge_name
from ivfarm.errors import NetworkError
from ivfarm.services.network.addressing import router_ip
from ivfarm.services.network.metadata_records import metadata_records
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.locks import run_lock
from ivfarm.store.models import LIVE_STATES, Address, Farm, Instance, PortForward
from vrouter.errors import RouterError
from vrouter.spec import Lease, RouterSpec
from vrouter.spec import PortForward as ForwardSpec


def router_key(vlan: int) -> str:
    """Short name of a farm's router (namespace ``ivfarm-<key>``)."""
    return f"r{vlan}"


def router_spec(cloud: CloudContext, session: Session, farm: Farm) -> RouterSpec:
    """The router's desired configuration, from the store."""
    public_net = ipaddress.IPv4Network(cloud.config.get("network.public.cidr"))
    live = list(session.scalars(
        select(Instance).where(Instance.farm_id == farm.id, Instance.state.in_(LIVE_STATES), Instance.ip.is_not(None))
        .order_by(Instance.ip)
    ))
    leases = tuple(Lease(mac=i.mac or "", ip=i.ip or "", hostname=i.name if _hostname_ok(i.name) else i.id) for i in live)
    forwards = tuple(
        ForwardSpec(f.protocol, f.public_port, f.private_ip, f.private_port)
        for f in session.scalars(select(PortForward).where(PortForward.farm_id == farm.id).order_by(PortForward.id))
    )
    elastic = session.scalar(
        select(Address).where(Address.farm_id == farm.id, Address.role == "elastic").order_by(Address.public_ip).limit(1)
    )
    target = None
    if elastic is not None and elastic.instance_id:
        bound = session.get(Instance, elastic.instance_id)
        target = bound.ip if bound is not None and bound.state in LIVE_STATES else None
    return RouterSpec(
        key=router_key(farm.vlan), farm=farm.name, lan_cidr=farm.cidr, lan_ip=router_ip(farm.cidr),
        lan_bridge=bridge_name(farm.vlan), wan_ip=farm.router_ip, wan_prefix=public_net.prefixlen,
        wan_gateway=cloud.config.get("network.public.gateway"),
        dns_forwarders=tuple(cloud.config.get("network.dns_forwarders")),
        leases=leases, forwards=forwards,
        elastic_ip=elastic.public_ip if elastic is not None else None, elastic_target=target,
        egress_deny=tuple(cloud.config.get("network.egress_deny")),
    )


def _hostname_ok(name: str) -> bool:
    return bool(name) and len(name) <= 63 and all(c.isalnum() or c == "-" for c in name) and name[0].isalnum()


def router_lock(cloud: CloudContext, vlan: int) -> contextlib.AbstractContextManager[None]:
    """Serialise updates of one router across threads and processes."""
    return run_lock(cloud, f"router-{vlan}")


def sync_router(cloud: CloudContext, farm_id: int) -> None:
    """Bring the farm's router in line with the store (leases, forwards, elastic IP) and, where
    the backend serves it, republish what its metadata service answers each VM."""
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        if farm is None:
            return
        backend = cloud.router_backend(farm.router_backend)
        if backend is None:
            return
        with router_lock(cloud, farm.vlan):
            spec = router_spec(cloud, session, farm)
            records = metadata_records(cloud, session, farm, spec) if backend.serves_metadata else None
            try:
                if backend.exists(spec.key):
                    backend.apply(spec)
                else:  # gone with a reboot of the router host, or removed by hand: rebuild it
                    cloud.segments.ensure(str(cloud.config.get("vrouter.host_uri")), farm.vlan)
                    backend.create(spec)
                if records is not None:
                    backend.publish_metadata(spec.key, records)
            except RouterError as exc:
                raise NetworkError(f"router of farm {farm.name}: {exc}") from exc


def publish_metadata(cloud: CloudContext, farm_id: int) -> None:
    """Republish what the farm router's metadata service answers, without touching the rest of the
    router (a drain's shutdown time or a host's rating changed); nothing when it serves none or is
    missing (``reconcile`` rebuilds it with its records)."""
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        backend = cloud.router_backend(farm.router_backend) if farm is not None else None
        if farm is None or backend is None or not backend.serves_metadata:
            return
        with router_lock(cloud, farm.vlan):
            spec = router_spec(cloud, session, farm)
            try:
                if backend.exists(spec.key):
                    backend.publish_metadata(spec.key, metadata_records(cloud, session, farm, spec))
            except RouterError as exc:
                raise NetworkError(f"router of farm {farm.name}: {exc}") from exc
