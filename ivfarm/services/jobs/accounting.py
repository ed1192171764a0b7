"""Accounting: sample usage from the hypervisors (cron) and sum it per farm or instance.

Each ``collect`` closes, for every instance and elastic IP, the interval since its previous sample
(or its launch / allocation) and records whether its domain was running then, so a site can hand
wall hours, vCPU-hours, memory GB-hours, disk GB-hours, elastic-IP hours and volume GB-hours to
its grid's accounting as APEL does for batch jobs.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivfarm.errors import InvalidInput
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.inventory import scan
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


def _latest_samples(session: Session) -> dict[str, tuple[dt.datetime, bool]]:
    """Per resource: the end of its newest record and whether it was running then."""
    newest = (select(UsageRecord.resource_id, func.max(UsageRecord.end).label("end"))
              .group_by(UsageRecord.resource_id).subquery())
    rows = session.execute(
        select(UsageRecord.resource_id, UsageRecord.end, UsageRecord.running)
        .join(newest, (UsageRecord.resource_id == newest.c.resource_id) & (UsageRecord.end == newest.c.end))
    )
    return {rid: (end, bool(running)) for rid, end, running in rows}


def collect(cloud: CloudContext, now: dt.datetime | None = None) -> CollectResult:
    """Record usage of every instance and elastic IP up to ``now`` (default: the current time)."""
    now = now or utcnow()
    with job_lock(cloud, "accounting"):
        inventory = scan(cloud)
        with cloud.store.write() as session:
            last = _latest_samples(session)
            farm_names = {f.id: f.name for f in session.scalars(select(Farm))}
            records = instances_seen = addresses_seen = 0
            for instance in session.scalars(select(Instance).where(
                    (Instance.state != "terminated") | (Instance.terminated_at.is_not(None)))):
                previous = last.get(instance.id)
                start = previous[0] if previous else instance.launched_at or instance.created_at
                if instance.state == "terminated":
                    end = instance.terminated_at or start
                    running = previous[1] if previous else instance.launched_at is not None
                    host_known = True
                else:
                    end = now
                    running = inventory.running(instance.id)
                    host_known = instance.host is None or instance.host.name not in inventory.unreachable
                if end <= start or not host_known:
                    continue
                session.add(UsageRecord(farm_name=farm_names.get(instance.farm_id or 0, ""), resource_id=instance.id,
                                        kind="instance", start=start, end=min(end, now), vcpus=instance.vcpus,
                                        memory_mb=instance.memory_mb, disk_gb=instance.disk_gb, running=running))
                records += 1
                instances_seen += 1
            for address in session.scalars(select(Address).where(Address.role == "elastic", Address.allocated.is_(True))):
                previous = last.get(address.public_ip)
                start = previous[0] if previous else address.allocated_at or now
                if now <= start:
                    continue
                session.add(UsageRecord(farm_name=farm_names.get(address.farm_id, ""), resource_id=address.public_ip,
                                        kind="address", start=start, end=now, running=True))
                records += 1
                addresses_seen += 1
            records += _volumes(session, last, farm_names, now)
    return CollectResult(records, instances_seen, addresses_seen, tuple(sorted(inventory.unreachable)))


def _volumes(session: Session, last: dict[str, tuple[dt.datetime, bool]], farm_names: dict[int, str],
             now: dt.datetime) -> int:
    """Record the GB every volume held since its previous sample (or its creation), up to its deletion."""
    added = 0
    for volume in session.scalars(select(Volume).where((Volume.state != "deleted") | (Volume.deleted_at.is_not(None)))):
        previous = last.get(volume.id)
        start = previous[0] if previous else volume.created_at
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
