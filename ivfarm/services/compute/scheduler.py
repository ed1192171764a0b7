"""Placement: filter hosts by class, state and free capacity, then rank them by a policy.

ivfarm does its own capacity accounting (libvirt's test driver enforces none, and a real host would
only fail late). Policies: ``pack`` fills the fullest host that still fits (workers: keep whole
hosts free for big jobs), ``stripe`` picks the emptiest (services: spread the risk of a host loss).
Hosts are kept sorted by free memory, so one placement costs a bisect plus a short scan. A batch
placed ``distinct`` (a spread placement group) puts each request on a host none of the others took.
"""
from __future__ import annotations

import bisect
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from ivfarm.config import Config
from ivfarm.errors import InvalidInput, NoValidHost

POLICIES = ("pack", "stripe")


@dataclass
class HostCapacity:
    """A host's schedulable capacity (after overcommit ratios) and what is already placed on it."""

    name: str
    host_class: str
    cpus: int
    memory_mb: int
    disk_gb: int
    used_cpus: int = 0
    used_memory_mb: int = 0
    used_disk_gb: int = 0
    enabled: bool = True

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.used_memory_mb

    def fits(self, request: Request) -> bool:
        """True when ``request`` fits in what is left."""
        return (
            self.used_cpus + request.vcpus <= self.cpus
            and self.used_memory_mb + request.memory_mb <= self.memory_mb
            and self.used_disk_gb + request.disk_gb <= self.disk_gb
        )

    def take(self, request: Request) -> None:
        self.used_cpus += request.vcpus
        self.used_memory_mb += request.memory_mb
        self.used_disk_gb += request.disk_gb


@dataclass(frozen=True)
class Request:
    """One instance to place."""

    vcpus: int
    memory_mb: int
    disk_gb: int
    host_class: str


class _ClassPool:
    """Hosts of one class, sorted by free memory."""

    def __init__(self, hosts: list[HostCapacity], policy: str) -> None:
        self.hosts = hosts
        self.policy = policy
        self.keys = sorted((h.free_memory_mb, i) for i, h in enumerate(hosts))

    def place(self, request: Request, avoid: Container[str] = ()) -> HostCapacity | None:
        keys = self.keys
        start = bisect.bisect_left(keys, (request.memory_mb, -1))
        indices = range(start, len(keys)) if self.policy == "pack" else range(len(keys) - 1, start - 1, -1)
        for position in indices:
            index = keys[position][1]
            host = self.hosts[index]
            if host.name not in avoid and host.fits(request):
                del keys[position]
                host.take(request)
                bisect.insort(keys, (host.free_memory_mb, index))
                return host
        return None


class Scheduler:
    """Places requests on hosts; all of a batch fits or none is placed."""

    def __init__(self, policies: dict[str, str]) -> None:
        for host_class, policy in policies.items():
            if policy not in POLICIES:
                raise InvalidInput(f"unknown scheduling policy {policy!r} for {host_class} hosts (use {', '.join(POLICIES)})")
        self.policies = policies

    @classmethod
    def from_config(cls, config: Config) -> Scheduler:
        """The site's scheduler: ``scheduler.worker_policy`` and ``scheduler.service_policy``."""
        return cls({"worker": config.get("scheduler.worker_policy"), "service": config.get("scheduler.service_policy")})

    def place(self, requests: Sequence[Request], hosts: Iterable[HostCapacity],
              distinct: bool = False) -> list[HostCapacity]:
        """The host chosen for each request, in order; raises ``NoValidHost`` if any does not fit.

        With ``distinct`` no two requests share a host. The ``hosts`` given are updated with the
        placed usage only when every request fits.
        """
        by_class: dict[str, list[HostCapacity]] = {}
        originals: dict[int, tuple[int, int, int]] = {}
        for host in hosts:
            if host.enabled:
                by_class.setdefault(host.host_class, []).append(host)
                originals[id(host)] = (host.used_cpus, host.used_memory_mb, host.used_disk_gb)
        pools = {cls: _ClassPool(members, self.policies.get(cls, "pack")) for cls, members in by_class.items()}
        chosen: list[HostCapacity] = []
        taken: set[str] = set()
        for request in requests:
            pool = pools.get(request.host_class)
            placed = pool.place(request, taken) if pool else None
            if placed is None:
                for members in by_class.values():
                    for member in members:
                        member.used_cpus, member.used_memory_mb, member.used_disk_gb = originals[id(member)]
                raise NoValidHost(
                    f"no enabled {request.host_class} host{' free of the others' if distinct else ''} "
                    f"has room for {request.vcpus} vCPU, {request.memory_mb} MB memory and {request.disk_gb} GB disk"
                )
            chosen.append(placed)
            if distinct:
                taken.add(placed.name)
        return chosen
