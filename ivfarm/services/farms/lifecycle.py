"""Virtual farms: one command makes a sandbox (tenant, network, router, addresses, quotas) or undoes it."""
from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import AlreadyExists, InvalidInput, NetworkError, NotFound, PoolExhausted
from ivfarm.services.compute import volume_work
from ivfarm.services.compute.provisioning import begin_terminate, teardown
from ivfarm.services.farms import grid_identity
from ivfarm.services.farms.elastic_ips import next_public_ips
from ivfarm.services.network.routers import router_key, router_lock, router_spec
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy import quotas, security_groups
from ivfarm.store.models import (
    Address,
    Farm,
    Host,
    Image,
    Instance,
    KeyPair,
    LaunchPermission,
    PlacementGroup,
    PortForward,
    Snapshot,
    Tag,
    Volume,
    utcnow,
)
from vrouter.base import RouterBackend
from vrouter.errors import RouterError

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9]{16,128}$")


@dataclass(frozen=True)
class FarmRequest:
    """What ``farm create`` asks for."""

    name: str
    owner: str = ""
    cidr: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    quotas: dict[str, int | None] | None = None
    router_backend: str | None = None
    vo: str | None = None  # grid identity for accounting (see grid_identity.resolve)
    fqan: str | None = None
    global_user_name: str | None = None


def find_farm(cloud: CloudContext, name: str) -> Farm:
    """A farm by name, or NotFound."""
    with cloud.store.read() as session:
        return farm_by_name(session, name)


def farm_by_name(session: Session, name: str) -> Farm:
    """A farm by name inside a session, or NotFound."""
    farm = session.scalar(select(Farm).where(Farm.name == name))
    if farm is None:
        raise NotFound("farm", name)
    return farm


def _validate(request: FarmRequest) -> None:
    if not _NAME_RE.match(request.name):
        raise InvalidInput(f"invalid farm name {request.name!r}: 1-32 lower-case letters, digits and '-', starting with a letter")
    if (request.access_key is None) != (request.secret_key is None):
        raise InvalidInput("--access-key and --secret-key go together")
    if request.access_key is not None and not _KEY_RE.match(request.access_key):
        raise InvalidInput("an access key is 16 to 128 letters and digits")
    if request.secret_key is not None and not 16 <= len(request.secret_key) <= 128:
        raise InvalidInput("a secret key is 16 to 128 characters")


def _pick_cidr(cloud: CloudContext, session: Session, wanted: str | None) -> str:
    used = [ipaddress.IPv4Network(c) for c in session.scalars(select(Farm.cidr))]
    public = ipaddress.IPv4Network(cloud.config.get("network.public.cidr"))
    if wanted:
        try:
            network = ipaddress.IPv4Network(wanted)
        except ValueError as exc:
            raise InvalidInput(f"invalid CIDR {wanted!r}: {exc}") from exc
        if not network.is_private or network.prefixlen > 24 or network.prefixlen < 16:
            raise InvalidInput(f"{wanted}: a farm network is a private /16 to /24 (a class C or larger)")
        clash = next((u for u in used if u.overlaps(network)), None)
        if clash is not None or network.overlaps(public):
            raise AlreadyExists(f"{wanted} overlaps {clash or public}, already in use")
        return str(network)
    pool = ipaddress.IPv4Network(cloud.config.get("network.farm_pool"))
    prefix = int(cloud.config.get("network.farm_prefix"))
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(u.overlaps(candidate) for u in used):
            return str(candidate)
    raise PoolExhausted(f"the farm network pool {pool} has no free /{prefix} left")


def _pick_vlan(cloud: CloudContext, session: Session) -> int:
    low, high = cloud.config.get("network.vlan_range")
    used = set(session.scalars(select(Farm.vlan)))
    for vlan in range(int(low), int(high) + 1):
        if vlan not in used:
            return vlan
    raise PoolExhausted(f"no free VLAN id left in {low}-{high}")


def _router_host_uri(cloud: CloudContext) -> str:
    return str(cloud.config.get("vrouter.host_uri"))


def create_farm(cloud: CloudContext, request: FarmRequest) -> Farm:
    """Create the farm with its network, router and addresses; on failure nothing is left."""
    _validate(request)
    identity = grid_identity.resolve(request.vo, request.fqan, request.global_user_name)
    limits = quotas.validate_limits(request.quotas or {})
    backend_name = request.router_backend or cloud.config.get("vrouter.backend")
    backend = cloud.router_backend(backend_name)
    with cloud.store.write() as session:
        if session.scalar(select(Farm).where(Farm.name == request.name)):
            raise AlreadyExists(f"farm {request.name!r} already exists")
        if request.access_key and session.scalar(select(Farm).where(Farm.access_key == request.access_key)):
            raise AlreadyExists("that access key belongs to another farm")
        defaults = cloud.config.get("quota_defaults")
        router_public, elastic_public = next_public_ips(cloud, session, 2)
        farm = Farm(
            name=request.name, owner=request.owner,
            access_key=request.access_key or ids.new_access_key(),
            secret_key=request.secret_key or ids.new_secret_key(),
            cidr=_pick_cidr(cloud, session, request.cidr), vlan=_pick_vlan(cloud, session),
            router_backend=backend_name, router_ip=router_public, status="creating",
            vo=identity.vo, fqan=identity.fqan, global_user_name=identity.global_user_name,
            **{f"quota_{k}": int(limits.get(k, defaults[k])) for k in quotas.RESOURCES},
        )
        session.add(farm)
        session.flush()
        security_groups.add_default_group(session, farm.id)
        session.add(Address(public_ip=router_public, farm_id=farm.id, role="router", allocated=True))
        session.add(Address(public_ip=elastic_public, farm_id=farm.id, role="elastic", allocated=True,
                            allocation_id=ids.new_id("allocation"), allocated_at=utcnow()))
        farm_id, vlan = farm.id, farm.vlan
    try:
        with journal.operation(cloud, "farm-create", f"farm:{request.name}"):
            _build_network(cloud, backend, farm_id, vlan, request.name)
        with cloud.store.write() as session:
            created = session.get(Farm, farm_id)
            assert created is not None  # the row was made above and only this call removes it
            created.status = "active"
            return created
    except BaseException:
        _teardown_network(cloud, backend, vlan, [])
        _delete_rows(cloud, farm_id)
        raise


def _build_network(cloud: CloudContext, backend: RouterBackend | None, farm_id: int, vlan: int, name: str) -> None:
    """The farm segment on the router host and the router itself."""
    if backend is not None:
        cloud.segments.ensure(_router_host_uri(cloud), vlan)
        with cloud.store.read() as session, router_lock(cloud, vlan):
            try:
                backend.create(router_spec(cloud, session, session.get_one(Farm, farm_id)))
            except RouterError as exc:
                raise NetworkError(f"cannot build the router of farm {name}: {exc}") from exc


def _teardown_network(cloud: CloudContext, backend: RouterBackend | None, vlan: int, uris: list[str]) -> None:
    """Remove the router and the farm segment from the router host and ``uris``."""
    if backend is not None:
        backend.destroy(router_key(vlan))
        uris = [*uris, _router_host_uri(cloud)]
    driver = cloud.segments
    for uri in dict.fromkeys(uris):
        try:
            driver.remove(uri, vlan)
        except Exception:  # noqa: BLE001 - an unreachable host keeps its segment until reconcile
            log.warning("could not remove segment %s from %s", vlan, uri, exc_info=True)


def _delete_rows(cloud: CloudContext, farm_id: int) -> None:
    with cloud.store.write() as session:
        instance_ids = list(session.scalars(select(Instance.id).where(Instance.farm_id == farm_id)))
        session.execute(delete(Address).where(Address.farm_id == farm_id))
        session.execute(delete(Tag).where(Tag.farm_id == farm_id))
        session.execute(delete(KeyPair).where(KeyPair.farm_id == farm_id))
        session.execute(delete(PortForward).where(PortForward.farm_id == farm_id))
        security_groups.drop_farm_groups(session, farm_id)
        session.execute(delete(Volume).where(Volume.farm_id == farm_id))
        session.execute(delete(Snapshot).where(Snapshot.farm_id == farm_id))
        if instance_ids:
            session.execute(delete(Instance).where(Instance.id.in_(instance_ids)))
        session.execute(delete(PlacementGroup).where(PlacementGroup.farm_id == farm_id))
        session.execute(delete(LaunchPermission).where(LaunchPermission.farm_id == farm_id))
        files = []
        for image in session.scalars(select(Image).where(Image.owner_farm_id == farm_id)):
            session.execute(delete(LaunchPermission).where(LaunchPermission.image_id == image.id))
            if session.scalar(select(Instance.id).where(Instance.image_id == image.id).limit(1)) is not None:
                image.owner_farm_id, image.state = None, "deregistered"  # other farms' instances still use it
            else:
                files.append(Path(image.path))
                session.delete(image)
        session.execute(delete(Farm).where(Farm.id == farm_id))
    for path in files:
        path.unlink(missing_ok=True)


def delete_farm(cloud: CloudContext, name: str) -> int:
    """Terminate every instance and remove router, segments, addresses and rows; returns instances removed."""
    with journal.operation(cloud, "farm-delete", f"farm:{name}"):
        return _delete_farm(cloud, name)


def _delete_farm(cloud: CloudContext, name: str) -> int:
    with cloud.store.write() as session:
        farm = farm_by_name(session, name)
        farm.status = "deleting"
        farm_id, vlan, backend_name = farm.id, farm.vlan, farm.router_backend
        live = list(session.scalars(select(Instance.id).where(Instance.farm_id == farm_id, Instance.state != "terminated")))
        uris = list(session.scalars(select(Host.uri).order_by(Host.id)))
    for instance_id in live:
        begin_terminate(cloud, instance_id)
        teardown(cloud, instance_id)
    volume_work.purge_farm(cloud, farm_id)
    reachable = []
    for uri in uris:
        try:
            if vlan in cloud.segments.list_vlans(uri):
                reachable.append(uri)
        except Exception:  # noqa: BLE001 - reconcile removes it when the host comes back
            log.warning("host %s unreachable while deleting farm %s", uri, name)
    _teardown_network(cloud, cloud.router_backend(backend_name), vlan, reachable)
    _delete_rows(cloud, farm_id)
    return len(live)


def farm_summary(cloud: CloudContext, farm: Farm) -> dict[str, object]:
    """What ``farm show`` prints (never the secret key)."""
    with cloud.store.read() as session:
        used = quotas.usage(session, farm.id)
        elastic = [a.public_ip for a in session.scalars(
            select(Address).where(Address.farm_id == farm.id, Address.role == "elastic"))]
    return {
        "name": farm.name, "owner": farm.owner, "status": farm.status, "cidr": farm.cidr, "vlan": farm.vlan,
        "router": farm.router_backend, "router_ip": farm.router_ip, "elastic_ips": ", ".join(elastic),
        "access_key": farm.access_key, "instances": used.instances,
        "vo": farm.vo, "fqan": farm.fqan, "global_user_name": farm.global_user_name,
        "created_at": farm.created_at,
    }


def list_farms(cloud: CloudContext) -> list[Farm]:
    """Every farm."""
    with cloud.store.read() as session:
        return list(session.scalars(select(Farm).order_by(Farm.name)))
