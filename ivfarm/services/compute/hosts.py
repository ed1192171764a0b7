"""Hypervisor registry: add, list, enable, disable, remove; capacity with overcommit ratios."""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from drivers.storage.ssh_cache import SshTarget
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, InvalidState, IvfarmError, NotFound
from ivfarm.services.compute.scheduler import HostCapacity
from ivfarm.services.network.routers import publish_metadata
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.driver_errors import driver_calls
from ivfarm.store.models import ACTIVE_STATES, HOST_CLASSES, LIVE_STATES, Drain, Host, Instance


@dataclass(frozen=True)
class HostView:
    """A host with its capacity and usage, as the CLI shows it."""

    name: str
    uri: str
    host_class: str
    enabled: bool
    status: str
    cpus: int
    memory_mb: int
    disk_gb: int
    cpu_ratio: float
    memory_ratio: float
    schedulable_cpus: int
    schedulable_memory_mb: int
    used_cpus: int
    used_memory_mb: int
    used_disk_gb: int
    instances: int
    ssh_target: str | None = None
    cache_dir: str | None = None
    migration_uri: str | None = None
    hs06_per_core: float | None = None
    draining_until: dt.datetime | None = None  # the shutdown time of a drain in progress
    drain_grace_s: int | None = None
    underlay_address: str | None = None
    netns: str | None = None


def get_host(session: Session, name: str) -> Host:
    """The host called ``name`` or NotFound."""
    host = session.scalar(select(Host).where(Host.name == name))
    if host is None:
        raise NotFound("host", name)
    return host


def ratios(cloud: CloudContext, host: Host) -> tuple[float, float]:
    """The CPU and memory allocation ratios in force for ``host``."""
    cpu = host.cpu_ratio if host.cpu_ratio is not None else cloud.config.get("hypervisor.cpu_allocation_ratio")
    mem = host.memory_ratio if host.memory_ratio is not None else cloud.config.get("hypervisor.memory_allocation_ratio")
    return float(cpu), float(mem)


def add_host(
    cloud: CloudContext,
    name: str,
    uri: str,
    host_class: str,
    cpus: int | None = None,
    memory_mb: int | None = None,
    disk_gb: int | None = None,
    cpu_ratio: float | None = None,
    memory_ratio: float | None = None,
    ssh_target: str | None = None,
    cache_dir: str | None = None,
    migration_uri: str | None = None,
    hs06_per_core: float | None = None,
    underlay_address: str | None = None,
    netns: str | None = None,
) -> Host:
    """Register a hypervisor; its URI must answer (capacity is read from it unless given).

    ``ssh_target`` (user@host:port) and ``cache_dir`` give it an image cache; ``migration_uri`` is
    how other hosts reach its libvirt for live migration when that differs from ``uri``;
    ``hs06_per_core`` its HEP-SPEC06 rating per core (Machine/Job Features ``hs06``).
    ``underlay_address`` is its end of VXLAN farm segments (an IPv4 address of the host); ``netns`` a
    network namespace of this machine holding the host's links (the multi-host test site).
    """
    if host_class not in HOST_CLASSES:
        raise InvalidInput(f"host class must be one of {', '.join(HOST_CLASSES)}, not {host_class!r}")
    if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").replace("_", "").isalnum():
        raise InvalidInput(f"invalid host name {name!r}: use letters, digits, '-', '_' and '.'")
    for label, value in (("--cpus", cpus), ("--memory-mb", memory_mb), ("--disk-gb", disk_gb)):
        if value is not None and value <= 0:
            raise InvalidInput(f"{label} must be positive")
    for label, ratio in (("--cpu-ratio", cpu_ratio), ("--memory-ratio", memory_ratio)):
        if ratio is not None and not 0 < ratio <= 64:
            raise InvalidInput(f"{label} must be between 0 and 64")
    _check_hs06(hs06_per_core)
    if ssh_target is not None:
        with driver_calls():
            ssh_target = str(SshTarget.parse(ssh_target))
    if underlay_address is not None:
        try:
            underlay_address = str(ipaddress.IPv4Address(underlay_address))
        except ValueError:
            raise InvalidInput(f"--underlay-address must be an IPv4 address, not {underlay_address!r}") from None
    if netns is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", netns):
        raise InvalidInput(f"invalid network namespace name {netns!r}")
    if cache_dir is not None and not cache_dir.startswith("/"):
        raise InvalidInput(f"--cache-dir must be an absolute path, not {cache_dir!r}")
    with cloud.store.read() as session:
        if session.scalar(select(Host).where(Host.name == name)):
            raise AlreadyExists(f"host {name!r} already exists")
        if session.scalar(select(Host).where(Host.uri == uri)):
            raise AlreadyExists(f"a host with URI {uri} is already registered")
        if underlay_address and session.scalar(select(Host).where(Host.underlay_address == underlay_address)):
            raise AlreadyExists(f"a host with underlay address {underlay_address} is already registered")
    info = cloud.hypervisor.probe(uri)  # raises HostUnreachable with a clear message
    host = Host(
        name=name,
        uri=uri,
        host_class=host_class,
        cpus=cpus or info.cpus,
        memory_mb=memory_mb or info.memory_mb,
        disk_gb=disk_gb or int(cloud.config.get("hypervisor.disk_gb")),
        cpu_ratio=cpu_ratio,
        memory_ratio=memory_ratio,
        ssh_target=ssh_target,
        cache_dir=cache_dir,
        migration_uri=migration_uri,
        hs06_per_core=hs06_per_core,
        underlay_address=underlay_address,
        netns=netns,
    )
    with cloud.store.write() as session:
        session.add(host)
    return host


def _check_hs06(value: float | None) -> None:
    if value is not None and not 0 < value <= 1000:
        raise InvalidInput(f"--hs06-per-core must be above 0 and at most 1000, not {value}")


def set_hs06(cloud: CloudContext, name: str, hs06_per_core: float) -> list[str]:
    """Rate the host's cores (HEP-SPEC06 each) and republish its VMs' ``hs06``; returns the
    routers that could not be told (``reconcile`` republishes them)."""
    _check_hs06(hs06_per_core)
    with cloud.store.write() as session:
        host = get_host(session, name)
        host.hs06_per_core = hs06_per_core
        farms = {f for f in session.scalars(select(Instance.farm_id).where(
            Instance.host_id == host.id, Instance.state.in_(LIVE_STATES))) if f is not None}
    warnings = []
    for farm_id in sorted(farms):
        try:
            publish_metadata(cloud, farm_id)
        except IvfarmError as exc:
            warnings.append(str(exc))
    return warnings


def set_enabled(cloud: CloudContext, name: str, enabled: bool) -> None:
    """Enable or disable scheduling on a host (running VMs stay where they are); a host being
    drained gracefully stays disabled until its drain is cancelled."""
    with cloud.store.write() as session:
        host = get_host(session, name)
        drain = session.scalar(select(Drain).where(Drain.host_id == host.id, Drain.state == "active")) if enabled else None
        if drain is not None:
            raise InvalidState(f"host {name} is draining until {drain.deadline:%Y-%m-%d %H:%M:%S} UTC: "
                               f"cancel the drain first (ivfarm host undrain {name})")
        host.enabled = enabled
        if enabled:
            host.status = "up"
            host.unreachable_since = None


def remove_host(cloud: CloudContext, name: str) -> None:
    """Unregister a host that runs no instance."""
    with cloud.store.write() as session:
        host = get_host(session, name)
        count = session.scalar(
            select(func.count()).select_from(Instance).where(Instance.host_id == host.id, Instance.state.in_(LIVE_STATES))
        )
        if count:
            raise InUse(f"host {name!r} still has {count} instance(s): drain or terminate them first")
        for instance in session.scalars(select(Instance).where(Instance.host_id == host.id)):
            instance.host_id = None
        session.execute(delete(Drain).where(Drain.host_id == host.id))  # its drain history goes with it
        session.delete(host)


def usage_by_host(session: Session, host_class: str | None = None) -> dict[int, tuple[int, int, int, int]]:
    """Per host id: (vCPUs, memory MB of active instances, disk GB of existing ones, instance count)."""
    usage: dict[int, list[int]] = {}
    query = (select(Instance.host_id, Instance.state, func.sum(Instance.vcpus), func.sum(Instance.memory_mb),
                    func.sum(Instance.disk_gb), func.count())
             .where(Instance.host_id.is_not(None), Instance.state.in_(LIVE_STATES))
             .group_by(Instance.host_id, Instance.state))
    if host_class is not None:
        query = query.where(Instance.host_class == host_class)
    for host_id, state, vcpus, memory, disk, count in session.execute(query):
        entry = usage.setdefault(host_id or 0, [0, 0, 0, 0])  # host_id is never NULL here (filtered)
        if state in ACTIVE_STATES:
            entry[0] += int(vcpus or 0)
            entry[1] += int(memory or 0)
        entry[2] += int(disk or 0)
        entry[3] += int(count)
    return {host_id: (e[0], e[1], e[2], e[3]) for host_id, e in usage.items()}


def _hosts_with_usage(cloud: CloudContext, session: Session, host_class: str | None = None,
                      by_name: bool = False) -> Iterator[tuple[Host, float, float, tuple[int, int, int, int]]]:
    """(host, CPU ratio, memory ratio, usage) for every host (of one class)."""
    usage = usage_by_host(session, host_class)
    query = select(Host).order_by(Host.name if by_name else Host.id)
    if host_class is not None:
        query = query.where(Host.host_class == host_class)
    for host in session.scalars(query):
        yield (host, *ratios(cloud, host), usage.get(host.id, (0, 0, 0, 0)))


def capacities(cloud: CloudContext, session: Session, host_class: str | None = None) -> list[HostCapacity]:
    """Schedulable capacity and current usage of every host (of one class), for the scheduler."""
    return [
        HostCapacity(name=host.name, host_class=host.host_class, cpus=int(host.cpus * cpu_ratio),
                     memory_mb=int(host.memory_mb * mem_ratio), disk_gb=host.disk_gb, used_cpus=used[0],
                     used_memory_mb=used[1], used_disk_gb=used[2], enabled=host.enabled and host.status == "up")
        for host, cpu_ratio, mem_ratio, used in _hosts_with_usage(cloud, session, host_class)
    ]


def list_hosts(cloud: CloudContext) -> list[HostView]:
    """Every host with its usage (and its drain in progress)."""
    with cloud.store.read() as session:
        drains = {d.host_id: d for d in session.scalars(select(Drain).where(Drain.state == "active",
                                                                             Drain.host_id.is_not(None)))}
        return [
            HostView(
                name=host.name, uri=host.uri, host_class=host.host_class, enabled=host.enabled,
                status=host.status, cpus=host.cpus, memory_mb=host.memory_mb, disk_gb=host.disk_gb,
                cpu_ratio=cpu_ratio, memory_ratio=mem_ratio,
                schedulable_cpus=int(host.cpus * cpu_ratio), schedulable_memory_mb=int(host.memory_mb * mem_ratio),
                used_cpus=used[0], used_memory_mb=used[1], used_disk_gb=used[2], instances=used[3],
                ssh_target=host.ssh_target, cache_dir=host.cache_dir, migration_uri=host.migration_uri,
                hs06_per_core=host.hs06_per_core,
                draining_until=drains[host.id].deadline if host.id in drains else None,
                drain_grace_s=drains[host.id].grace_s if host.id in drains else None,
                underlay_address=host.underlay_address, netns=host.netns,
            )
            for host, cpu_ratio, mem_ratio, used in _hosts_with_usage(cloud, session, by_name=True)
        ]


def show_host(cloud: CloudContext, name: str) -> HostView:
    """One host with its usage."""
    for view in list_hosts(cloud):
        if view.name == name:
            return view
    raise NotFound("host", name)
