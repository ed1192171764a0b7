"""APEL cloud accounting: usage records in APEL's cloud message format (v0.4), queued for ssmsend.

APEL keeps one record per VM and accounting month (``PRIMARY KEY (VMUUID, MeasurementMonth,
MeasurementYear)``, loaded with ``REPLACE``), so a record is cumulative: from the VM's start up to the
measurement time ``StartTime + SuspendDuration + WallDuration``, which must fall in the record's
month. Sending a month again replaces what the server holds. Units as cASO sends them: times in
epoch seconds, durations in seconds, Memory in MB, Disk and network traffic in GB (2**30 bytes).
Messages go into a python-dirq ``QueueSimple`` directory, ``ssmsend``'s outgoing queue.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dirq.QueueSimple import QueueSimple
from sqlalchemy import select

from ivfarm.errors import ConfigError, InvalidInput
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Farm, Host, Instance, UsageRecord, utcnow

FORMATS = ("apel",)
HEADER = "APEL-cloud-message: v0.4"
SEPARATOR = "%%"
FIELDS = ("VMUUID", "SiteName", "CloudComputeService", "MachineName", "LocalUserId", "LocalGroupId",
          "GlobalUserName", "FQAN", "Status", "StartTime", "EndTime", "SuspendDuration", "WallDuration",
          "CpuDuration", "CpuCount", "NetworkType", "NetworkInbound", "NetworkOutbound", "PublicIPCount",
          "Memory", "Disk", "BenchmarkType", "Benchmark", "StorageRecordId", "ImageId", "CloudType")
GB = 2 ** 30
SECOND = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class ExportResult:
    """What one export queued."""

    records: int
    messages: tuple[str, ...]  # dirq element names (<dir>/<file>) under the queue directory
    outdir: str


def default_window(now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The previous and the current month up to now: a month's last record is sent after it ended."""
    now = now or utcnow()
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous = (first - dt.timedelta(days=1)).replace(day=1)
    return previous, now


def _months(since: dt.datetime, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The calendar months (UTC) that [since, until) touches, each clipped to the window."""
    periods = []
    start = since
    while start < until:
        month = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (month + dt.timedelta(days=32)).replace(day=1)
        periods.append((start, min(following, until)))
        start = following
    return periods


def _overlap(record: UsageRecord, cut: dt.datetime) -> tuple[float, float]:
    """Seconds of ``record`` before ``cut`` and the fraction of the record that is."""
    length = (record.end - record.start).total_seconds()
    inside = max(0.0, (min(record.end, cut) - record.start).total_seconds())
    return inside, (inside / length if length > 0 else 0.0)


@dataclass(frozen=True)
class _Vm:
    """What the store knows of a VM besides its samples."""

    ended_at: dt.datetime | None  # terminated (or its row went with its farm: the end of its last sample)
    farm: Farm | None
    hs06_per_core: float | None  # of the host it ran on last (HEPSPEC is APEL's per-core benchmark)


def _record(rows: list[UsageRecord], vm: _Vm, cut: dt.datetime, site: dict[str, str]) -> dict[str, str]:
    """One VM's cumulative record from its first sample up to ``cut``."""
    wall = suspend = cpu = rx = tx = 0.0
    last = rows[0]
    for row in rows:
        if row.start >= cut:
            break
        seconds, fraction = _overlap(row, cut)
        if row.running:
            wall += seconds
        else:
            suspend += seconds
        cpu, rx, tx = cpu + row.cpu_s * fraction, rx + row.net_in_bytes * fraction, tx + row.net_out_bytes * fraction
        last = row
    completed = vm.ended_at is not None and vm.ended_at <= cut
    status = "completed" if completed else "started" if last.running else "suspended"
    farm = vm.farm
    values: dict[str, object] = {
        "VMUUID": last.resource_id, "SiteName": site["site_name"], "CloudComputeService": site["service"],
        "MachineName": last.machine_name or last.resource_id,
        "LocalUserId": (farm.owner if farm and farm.owner else last.farm_name), "LocalGroupId": last.farm_name,
        "GlobalUserName": farm.global_user_name if farm else "", "FQAN": farm.fqan if farm else "",
        "Status": status, "StartTime": int(rows[0].start.timestamp()),
        "EndTime": int(vm.ended_at.timestamp()) if completed and vm.ended_at else None,
        "SuspendDuration": int(suspend), "WallDuration": int(wall), "CpuDuration": int(cpu),
        "CpuCount": last.vcpus, "NetworkInbound": round(rx / GB), "NetworkOutbound": round(tx / GB),
        "PublicIPCount": last.public_ips, "Memory": last.memory_mb, "Disk": last.disk_gb,
        "ImageId": last.image_id, "CloudType": site["cloud_type"],
        "BenchmarkType": "HEPSPEC" if vm.hs06_per_core else None, "Benchmark": vm.hs06_per_core or None,
    }
    return {field: str(values[field]) for field in FIELDS if values.get(field) not in (None, "")}


def _site(cloud: CloudContext) -> dict[str, str]:
    site_name = cloud.config.get("accounting.apel.site_name")
    if not site_name:
        raise ConfigError("accounting.apel.site_name is not set: APEL needs the site's GOCDB name")
    service = cloud.config.get("accounting.apel.cloud_compute_service") or site_name
    return {"site_name": str(site_name), "service": str(service),
            "cloud_type": str(cloud.config.get("accounting.apel.cloud_type"))}


def cloud_records(cloud: CloudContext, since: dt.datetime, until: dt.datetime) -> list[dict[str, str]]:
    """One cumulative record per VM and calendar month for every VM that used [since, until)."""
    if until <= since:
        raise InvalidInput("--until must be after --since")
    site = _site(cloud)
    with cloud.store.read() as session:
        used = select(UsageRecord.resource_id).where(
            UsageRecord.kind == "instance", UsageRecord.end > since, UsageRecord.start < until).distinct()
        samples: dict[str, list[UsageRecord]] = defaultdict(list)
        for row in session.scalars(select(UsageRecord).where(
                UsageRecord.resource_id.in_(used), UsageRecord.start < until).order_by(UsageRecord.start)):
            samples[row.resource_id].append(row)
        farms = {farm.name: farm for farm in session.scalars(select(Farm))}
        ratings = dict(session.execute(select(Host.name, Host.hs06_per_core)).all())
        terminated = dict(session.execute(select(Instance.id, Instance.terminated_at).where(
            Instance.id.in_(list(samples)))).all())
    records = []
    for month_start, month_end in _months(since, until):
        # the month's measurement time must stay inside it: cut a second before the next month begins
        boundary = month_end == month_end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        cut = month_end - SECOND if boundary else month_end
        for resource_id, rows in sorted(samples.items()):
            if not any(r.end > month_start and r.start < cut for r in rows):
                continue
            ended = terminated[resource_id] if resource_id in terminated else rows[-1].end
            vm = _Vm(ended, farms.get(rows[0].farm_name), ratings.get(rows[-1].host_name or ""))
            records.append(_record(rows, vm, cut, site))
    return records


def render(records: list[dict[str, str]]) -> str:
    """One APEL cloud message: the header, then ``Key: value`` lines, records separated by ``%%``."""
    bodies = ["".join(f"{key}: {value}\n" for key, value in record.items()) for record in records]
    return f"{HEADER}\n" + f"{SEPARATOR}\n".join(bodies)


def _writable(outdir: Path) -> None:
    """Make ``outdir`` and prove a file can be written there (dirq would retry an unwritable one forever)."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=outdir, prefix=".ivfarm-probe-"):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot write APEL messages to {outdir}: {exc.strerror or exc}") from exc


def export(cloud: CloudContext, fmt: str, outdir: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None) -> ExportResult:
    """Queue the records of [since, until) (default: last and this month) in ``outdir`` as dirq messages."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    window_since, window_until = default_window()
    since, until = since or window_since, until or window_until
    records = cloud_records(cloud, since, until)
    directory = Path(outdir or str(cloud.config.get("accounting.apel.outgoing_dir")))
    _writable(directory)
    size = int(cloud.config.get("accounting.apel.records_per_message"))
    queue = QueueSimple(os.fspath(directory))
    names = tuple(queue.add(render(records[i:i + size])) for i in range(0, len(records), size))
    return ExportResult(len(records), names, os.fspath(directory))
