"""Per-farm quotas: instances, vCPUs, memory, disk, elastic IPs, volumes and volume GB.

Checks run inside the caller's write transaction after the farm row is locked
(``Store.lock_farm``), so no interleaving of concurrent requests can pass the last free slot.
Usage is never kept in counters: it is counted from the instance and address rows, so it is
released exactly once, when the rows change state.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ivfarm.errors import InvalidInput, QuotaExceeded
from ivfarm.store.models import ACTIVE_STATES, LIVE_STATES, Address, Farm, Instance, Volume

# Instances that hold CPU and memory (stopped ones keep only their disk, as on EC2).
COUNTED_STATES = (*ACTIVE_STATES, "shutting-down")
RESOURCES = ("instances", "vcpus", "memory_mb", "disk_gb", "addresses", "volumes", "volume_gb")
# Volumes that hold storage (a volume being deleted still does until its disk is gone).
VOLUME_STATES = ("creating", "available", "in-use", "deleting", "error")


@dataclass(frozen=True)
class Usage:
    """Amounts of each quota resource."""

    instances: int = 0
    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0
    addresses: int = 0
    volumes: int = 0
    volume_gb: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def limits(farm: Farm) -> Usage:
    """The farm's quota limits."""
    return Usage(farm.quota_instances, farm.quota_vcpus, farm.quota_memory_mb, farm.quota_disk_gb, farm.quota_addresses,
                 farm.quota_volumes, farm.quota_volume_gb)


def usage(session: Session, farm_id: int) -> Usage:
    """What the farm uses now, counted from the store (one pass over the farm's live instances)."""
    counted = Instance.state.in_(COUNTED_STATES)
    active = session.execute(
        select(func.count(case((counted, 1))), func.coalesce(func.sum(case((counted, Instance.vcpus))), 0),
               func.coalesce(func.sum(case((counted, Instance.memory_mb))), 0),
               func.coalesce(func.sum(Instance.disk_gb), 0))
        .where(Instance.farm_id == farm_id, Instance.state.in_(LIVE_STATES))
    ).one()
    addresses = session.scalar(
        select(func.count()).select_from(Address).where(Address.farm_id == farm_id, Address.role == "elastic", Address.allocated.is_(True))
    )
    volumes = session.execute(
        select(func.count(), func.coalesce(func.sum(Volume.size_gb), 0))
        .where(Volume.farm_id == farm_id, Volume.state.in_(VOLUME_STATES))
    ).one()
    return Usage(int(active[0]), int(active[1]), int(active[2]), int(active[3]), int(addresses or 0),
                 int(volumes[0]), int(volumes[1]))


def admissible_count(session: Session, farm: Farm, vcpus: int, memory_mb: int, disk_gb: int,
                     max_count: int, min_count: int) -> int:
    """How many instances of this size the farm may still launch (at most ``max_count``).

    Raises QuotaExceeded (naming the binding resource) when fewer than ``min_count`` fit.
    """
    if min_count < 1 or min_count > max_count:
        raise InvalidInput("MinCount must be at least 1 and not above MaxCount")
    used, limit = usage(session, farm.id), limits(farm)
    per_instance = {"instances": 1, "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb}
    room = {name: (getattr(limit, name) - getattr(used, name)) // size if size else max_count
            for name, size in per_instance.items()}
    count = max(0, min(max_count, *room.values()))
    if count < min_count:
        binding = min(room, key=lambda name: room[name])
        raise QuotaExceeded(binding, getattr(limit, binding), getattr(used, binding), min_count * per_instance[binding])
    return count


def check_start(session: Session, farm: Farm, instance: Instance) -> None:
    """Raise QuotaExceeded when starting a stopped instance would put the farm over quota."""
    admissible_count(session, farm, instance.vcpus, instance.memory_mb, 0, 1, 1)


def check_address(session: Session, farm: Farm) -> None:
    """Raise QuotaExceeded when the farm may not hold one more elastic IP."""
    used, limit = usage(session, farm.id), limits(farm)
    if used.addresses + 1 > limit.addresses:
        raise QuotaExceeded("addresses", limit.addresses, used.addresses, 1)


def check_volumes(session: Session, farm: Farm, count: int, size_gb: int) -> None:
    """Raise QuotaExceeded when the farm may not hold ``count`` more volumes of ``size_gb`` GB in all
    (``count`` 0: a volume growing by ``size_gb``)."""
    used, limit = usage(session, farm.id), limits(farm)
    if used.volumes + count > limit.volumes:
        raise QuotaExceeded("volumes", limit.volumes, used.volumes, count)
    if used.volume_gb + size_gb > limit.volume_gb:
        raise QuotaExceeded("volume_gb", limit.volume_gb, used.volume_gb, size_gb)


def validate_limits(values: dict[str, int | None]) -> dict[str, int]:
    """The limits that were given, checked to be non-negative integers."""
    given = {}
    for name, value in values.items():
        if name not in RESOURCES:
            raise InvalidInput(f"unknown quota resource {name!r}")
        if value is None:
            continue
        if not isinstance(value, int) or value < 0:
            raise InvalidInput(f"quota {name} must be a non-negative integer")
        given[name] = value
    return given


def set_limits(farm: Farm, values: dict[str, int]) -> None:
    """Write validated limits onto the farm row."""
    for name, value in values.items():
        setattr(farm, f"quota_{name}", value)


def report(session: Session, farm: Farm) -> list[dict[str, int | str]]:
    """Limit and usage of every resource of the farm."""
    used, limit = usage(session, farm.id).as_dict(), limits(farm).as_dict()
    return [{"resource": name, "limit": limit[name], "used": used[name], "free": limit[name] - used[name]}
            for name in RESOURCES]
