"""Reading APEL cloud messages back as APEL's ssmsend and loader do: dirq QueueSimple, then the format's rules."""
from __future__ import annotations

import os
import re
from pathlib import Path

from dirq.QueueSimple import QueueSimple

FIELDS = {"VMUUID", "SiteName", "CloudComputeService", "MachineName", "LocalUserId", "LocalGroupId",
          "GlobalUserName", "FQAN", "Status", "StartTime", "EndTime", "SuspendDuration", "WallDuration",
          "CpuDuration", "CpuCount", "NetworkType", "NetworkInbound", "NetworkOutbound", "PublicIPCount",
          "Memory", "Disk", "BenchmarkType", "Benchmark", "StorageRecordId", "ImageId", "CloudType"}


def parse_message(text: str) -> list[dict[str, str]]:
    """An APEL cloud message by the format's rules: the header line, then records of ``Key: value``
    lines separated by lines holding ``%%``."""
    lines = text.splitlines()
    assert lines[0] == "APEL-cloud-message: v0.4"
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines[1:]:
        if line == "%%":
            records.append(current)
            current = {}
            continue
        key, sep, value = line.partition(": ")
        assert sep and key in FIELDS and value.strip() == value and value, f"bad line {line!r}"
        assert key not in current, f"{key} twice in one record"
        current[key] = value
    records.append(current)
    return records


def read_queue(outdir: Path) -> list[dict[str, str]]:
    """Every record in the outgoing queue, read the way ssmsend reads it (dirq QueueSimple)."""
    names = sorted(os.path.relpath(p, outdir) for p in outdir.glob("*/*"))
    assert names and all(re.fullmatch(r"[0-9a-f]{8}/[0-9a-f]{14}", n) for n in names), names
    queue = QueueSimple(str(outdir))
    records: list[dict[str, str]] = []
    for name in queue:
        assert queue.lock(name)
        data = queue.get(name)
        records += parse_message(data.decode() if isinstance(data, bytes) else data)
        queue.unlock(name)
    return records
