"""Accounting: sample usage from the hypervisors (cron) and sum it per farm or instance.

Each ``collect`` closes, for every instance and elastic IP, the interval since its previous sample
(or its launch / allocation) and records whether its domain was running then, so a site can hand
wall hours, vCPU-hours, memory GB-hours, disk GB-hours, elastic-IP hours and volume GB-hours to its grid's
accounting as APEL does for batch jobs. For a running domain it also keeps libvirt's cumulative
counters (CPU time, NIC bytes) with the host and boot they belong to, and records what they grew
by since the previous sample; a domain that started again or moved host since then counts from
zero, so everything its counters hold is new.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from drivers.hypervisor.base import DomainCounters
from ivfarm.errors import InvalidInput
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.inventory import SeenDomain, scan
from ivfarm.services.runtime.locks import job_lock
from ivfarm.store.models import Address, Farm, Instance, UsageRecord, Volume, utcnow

HOUR = 3600.0


@dataclass(frozen=True)
class CollectResult:
    """What one ``collect`` recorded."""

    records: int
    instances: int
    addresses: int
    unreachable_hosts: tuple[str, ...]


@dataclass(frozen=True)
class Latest:
    """The newest record of a resource: when it ended, whether the domain ran, and its counters then."""

    end: dt.datetime
    running: bool
    host_name: str | None
    boot_id: int | None
    counters: tuple[int, int, int] | None  # cpu_time_ns, rx, tx


def _latest_samples(session: Session) -> dict[str, Latest]:
    """Per resource: its newest record."""
    newest = (select(UsageRecord.resource_id, func.max(UsageRecord.end).label("end"))
              .group_by(UsageRecord.resource_id).subquery())
    rows = session.scalars(
        select(UsageRecord)
        .join(newest, (UsageRecord.resource_id == newest.c.resource_id) & (UsageRecord.end == newest.c.end))
    )
    latest = {}
    for row in rows:
        counted = (row.cpu_time_ns, row.rx_total, row.tx_total)
        latest[row.resource_id] = Latest(
            row.end, bool(row.running), row.host_name, row.boot_id,
            None if None in counted else (int(row.cpu_time_ns or 0), int(row.rx_total or 0), int(row.tx_total or 0)))
    return latest


def counted_since(previous: Latest | None, host: str, now: DomainCounters) -> tuple[float, int, int]:
    """CPU seconds, bytes in and bytes out a running domain used since ``previous``: the growth of its
    counters in the same boot on the same host, else (restarted, moved, first sample) all they hold."""
    same_boot = (previous is not None and previous.counters is not None and previous.host_name == host
                 and previous.boot_id == now.boot_id)
    before = previous.counters if same_boot and previous and previous.counters else (0, 0, 0)
    grown = [value - old if value >= old else value
             for value, old in zip((now.cpu_time_ns, now.rx_bytes, now.tx_bytes), before, strict=True)]
    return grown[0] / 1e9, grown[1], grown[2]


def _sampled(previous: Latest | None, seen: SeenDomain | None) -> dict[str, object]:
    """The counter columns of a new instance record."""
    if seen is None or seen.counters is None:
        return {}
    counters = seen.counters
    cpu_s, rx, tx = counted_since(previous, seen.host, counters)
    return {"host_name": seen.host, "boot_id": counters.boot_id, "cpu_time_ns": counters.cpu_time_ns,
            "rx_total": counters.rx_bytes, "tx_total": counters.tx_bytes,
            "cpu_s": cpu_s, "net_in_bytes": rx, "net_out_bytes": tx}


def collect(cloud: CloudContext, now: dt.datetime | None = None) -> CollectResult:
    """Record usage of every instance and elastic IP up to ``now`` (default: the current time)."""
    now = now or utcnow()
    with job_lock(cloud, "accounting"):
        inventory = scan(cloud, counters=True)
        with cloud.store.write() as session:
            last = _latest_samples(session)
            farm_names = {f.id: f.name for f in session.scalars(select(Farm))}
            bound = dict(session.execute(  # elastic IPs bound to each instance
                select(Address.instance_id, func.count()).where(Address.instance_id.is_not(None))
                .group_by(Address.instance_id)).all())
            records = instances_seen = addresses_seen = 0
            for instance in session.scalars(select(Instance).where(
                    (Instance.state != "terminated") | (Instance.terminated_at.is_not(None)))):
                previous = last.get(instance.id)
                start = previous.end if previous else instance.launched_at or instance.created_at
                sampled: dict[str, object] = {}
                if instance.state == "terminated":
                    end = instance.terminated_at or start
                    running = previous.running if previous else instance.launched_at is not None
                    host_known = True
                else:
                    end = now
                    running = inventory.running(instance.id)
                    host_known = instance.host is None or instance.host.name not in inventory.unreachable
                    sampled = _sampled(previous, inventory.domains.get(instance.id) if running else None)
                if end <= start or not host_known:
                    continue
                session.add(UsageRecord(farm_name=farm_names.get(instance.farm_id or 0, ""), resource_id=instance.id,
                                        kind="instance", start=start, end=min(end, now), vcpus=instance.vcpus,
                                        memory_mb=instance.memory_mb, disk_gb=instance.disk_gb, running=running,
                                        public_ips=bound.get(instance.id, 0) + int(instance.public_nic),
                                        machine_name=instance.name, image_id=instance.image_id, **sampled))
                records += 1
                instances_seen += 1
            for address in session.scalars(select(Address).where(Address.role == "elastic", Address.allocated.is_(True))):
                previous = last.get(address.public_ip)
                start = previous.end if previous else address.allocated_at or now
                if now <= start:
                    continue
                session.add(UsageRecord(farm_name=farm_names.get(address.farm_id, ""), resource_id=address.public_ip,
                                        kind="address", start=start, end=now, running=True))
                records += 1
                addresses_seen += 1
            records += _volumes(session, last, farm_names, now)
    return CollectResult(records, instances_seen, addresses_seen, tuple(sorted(inventory.unreachable)))


def _volumes(session: Session, last: dict[str, Latest], farm_names: dict[int, str],
             now: dt.datetime) -> int:
    """Record the GB every volume held since its previous sample (or its creation), up to its deletion."""
    added = 0
    for volume in session.scalars(select(Volume).where((Volume.state != "deleted") | (Volume.deleted_at.is_not(None)))):
        previous = last.get(volume.id)
        start = previous.end if previous else volume.created_at
        end = min(volume.deleted_at or now, now)
        if end <= start:
            continue
        session.add(UsageRecord(farm_name=farm_names.get(volume.farm_id, ""), resource_id=volume.id, kind="volume",
                                start=start, end=end, disk_gb=volume.size_gb, running=True))
        added += 1
    return added


@dataclass(frozen=True)
class UsageLine:
    """Summed usage of one farm (or one instance) over the reporting window."""

    farm: str
    resource: str
    instances: int
    wall_hours: float
    vcpu_hours: float
    memory_gb_hours: float
    disk_gb_hours: float
    eip_hours: float
    volume_gb_hours: float = 0.0


def report(cloud: CloudContext, farm: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, per_instance: bool = False) -> list[UsageLine]:
    """Usage summed per farm (or per instance), clipped to [since, until)."""
    if since and until and until <= since:
        raise InvalidInput("--until must be after --since")
    query = select(UsageRecord)
    if farm:
        query = query.where(UsageRecord.farm_name == farm)
    if since:
        query = query.where(UsageRecord.end > since)
    if until:
        query = query.where(UsageRecord.start < until)
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * 6)
    resources: dict[tuple[str, str], set[str]] = defaultdict(set)
    with cloud.store.read() as session:
        for record in session.scalars(query):
            start = max(record.start, since) if since else record.start
            end = min(record.end, until) if until else record.end
            hours = max(0.0, (end - start).total_seconds() / HOUR)
            key = (record.farm_name, record.resource_id if per_instance else "*")
            totals = sums[key]
            if record.kind == "address":
                totals[4] += hours
                continue
            if record.kind == "volume":
                totals[5] += hours * record.disk_gb
                continue
            resources[key].add(record.resource_id)
            if record.running:
                totals[0] += hours
                totals[1] += hours * record.vcpus
                totals[2] += hours * record.memory_mb / 1024
            totals[3] += hours * record.disk_gb
    return [UsageLine(farm_name, resource, len(resources[(farm_name, resource)]), *(round(v, 4) for v in totals))
            for (farm_name, resource), totals in sorted(sums.items())]


@dataclass(frozen=True)
class UsageSeries:
    """Running usage per farm in equal time buckets: ``edges`` has one more entry than each series."""

    edges: list[dt.datetime]
    vcpu_hours: dict[str, list[float]]
    memory_gb_hours: dict[str, list[float]]


def series(cloud: CloudContext, farm: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, buckets: int = 24) -> UsageSeries:
    """vCPU-hours and memory GB-hours of running instances per farm, in ``buckets`` slices of the window
    (default: from the first to the last recorded sample)."""
    query = select(UsageRecord).where(UsageRecord.kind == "instance", UsageRecord.running.is_(True))
    if farm:
        query = query.where(UsageRecord.farm_name == farm)
    with cloud.store.read() as session:
        rows = list(session.scalars(query))
    if not rows:
        raise InvalidInput("no usage recorded in that window: run `ivfarm accounting collect` first")
    start = since or min(r.start for r in rows)
    end = until or max(r.end for r in rows)
    if end <= start:
        raise InvalidInput("--until must be after --since")
    width = (end - start) / buckets
    edges = [start + width * i for i in range(buckets + 1)]
    vcpu: dict[str, list[float]] = defaultdict(lambda: [0.0] * buckets)
    memory: dict[str, list[float]] = defaultdict(lambda: [0.0] * buckets)
    for row in rows:
        for i in range(buckets):
            hours = (min(row.end, edges[i + 1]) - max(row.start, edges[i])).total_seconds() / HOUR
            if hours > 0:
                vcpu[row.farm_name][i] += hours * row.vcpus
                memory[row.farm_name][i] += hours * row.memory_mb / 1024
    return UsageSeries(edges, dict(sorted(vcpu.items())), dict(sorted(memory.items())))
