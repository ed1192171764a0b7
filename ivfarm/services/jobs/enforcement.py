"""``quota enforce``: recount usage from the hypervisors and bring farms back within their limits.

Counters drift and limits get lowered; this job trusts only what runs. For a farm over a limit it
picks the newest running instances first and reports, stops or terminates them until the farm fits.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from ivfarm.errors import InvalidState, IvfarmError
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.inventory import Inventory, scan
from ivfarm.services.runtime.locks import job_lock
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import Address, Farm, Instance

log = logging.getLogger(__name__)
POLICIES = ("report", "stop", "terminate")


@dataclass
class FarmVerdict:
    """One farm's recounted usage, the limits it breaks and what was (or would be) done."""

    farm: str
    usage: dict[str, int]
    limits: dict[str, int]
    over: list[str]
    actions: list[dict[str, str]] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


@dataclass
class EnforceResult:
    """The outcome of one run."""

    policy: str
    dry_run: bool
    farms: list[FarmVerdict] = field(default_factory=list)
    unreachable_hosts: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: every farm within quota; 1: acted or would act; 2: errors."""
        if self.errors:
            return 2
        return 1 if any(v.over for v in self.farms) else 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "exit_code": self.exit_code}

    def summary_lines(self) -> list[str]:
        """A human summary for the cron mail."""
        verb = {"report": "would act on", "stop": "stopped", "terminate": "terminated"}[self.policy]
        if self.dry_run and self.policy != "report":
            verb = f"would have {verb}"
        lines = []
        for verdict in self.farms:
            if not verdict.over:
                continue
            over = ", ".join(f"{r} {verdict.usage[r]}/{verdict.limits[r]}" for r in verdict.over)
            acted = ", ".join(a["instance"] for a in verdict.actions) or "nothing"
            lines.append(f"farm {verdict.farm} over quota ({over}): {verb} {acted}")
            lines.extend(f"  farm {verdict.farm}: {note}" for note in verdict.unresolved)
        lines.extend(f"host {h} unreachable: {e}" for h, e in self.unreachable_hosts.items())
        lines.extend(f"error: {e}" for e in self.errors)
        within = sum(1 for v in self.farms if not v.over)
        lines.append(f"{len(self.farms)} farm(s) checked, {within} within quota")
        return lines


def recount(inventory: Inventory, rows: list[Instance], addresses: int) -> dict[str, int]:
    """A farm's usage from what the hypervisors run (disk: every domain that exists)."""
    running = [i for i in rows if inventory.running(i.id)]
    existing = [i for i in rows if i.id in inventory.domains]
    return {
        "instances": len(running), "vcpus": sum(i.vcpus for i in running),
        "memory_mb": sum(i.memory_mb for i in running), "disk_gb": sum(i.disk_gb for i in existing),
        "addresses": addresses,
    }


def _plan(verdict: FarmVerdict, rows: list[Instance], inventory: Inventory, policy: str) -> list[Instance]:
    """Newest running instances first, until the farm fits (stopping frees no disk)."""
    usage = dict(verdict.usage)
    chosen: list[Instance] = []
    newest_first = sorted((i for i in rows if inventory.running(i.id)), key=lambda i: (i.created_at, i.id), reverse=True)
    for instance in newest_first:
        if all(usage[r] <= verdict.limits[r] for r in ("instances", "vcpus", "memory_mb", "disk_gb")):
            break
        if policy == "stop" and all(usage[r] <= verdict.limits[r] for r in ("instances", "vcpus", "memory_mb")):
            break
        chosen.append(instance)
        usage["instances"] -= 1
        usage["vcpus"] -= instance.vcpus
        usage["memory_mb"] -= instance.memory_mb
        if policy != "stop":
            usage["disk_gb"] -= instance.disk_gb
    for resource in ("instances", "vcpus", "memory_mb", "disk_gb", "addresses"):
        if usage[resource] > verdict.limits[resource]:
            verdict.unresolved.append(
                f"{resource} stays over its limit ({usage[resource]}/{verdict.limits[resource]}) under policy {policy}")
    return chosen


def _apply(cloud: CloudContext, instance: Instance, policy: str) -> None:
    """Stop or terminate: each a compare-and-set from the state the instance has when it is applied."""
    if policy == "stop":
        instances.stop(cloud, instance.id)
    else:
        provisioning.terminate(cloud, instance.id)


def enforce(cloud: CloudContext, policy: str = "report", dry_run: bool = False) -> EnforceResult:
    """One run of the cron job (holding its lock)."""
    if policy not in POLICIES:
        raise IvfarmError(f"unknown policy {policy!r} (use {', '.join(POLICIES)})")
    result = EnforceResult(policy=policy, dry_run=dry_run)
    with job_lock(cloud, "quota-enforce"):
        inventory = scan(cloud)
        result.unreachable_hosts = inventory.unreachable
        with cloud.store.read() as session:
            farms = list(session.scalars(select(Farm).where(Farm.status == "active").order_by(Farm.name)))
            rows_by_farm: dict[int, list[Instance]] = {f.id: [] for f in farms}
            for row in session.scalars(select(Instance).where(Instance.farm_id.is_not(None), Instance.state != "terminated")):
                rows_by_farm.setdefault(row.farm_id or 0, []).append(row)
            eips = {f.id: session.query(Address).filter_by(farm_id=f.id, role="elastic", allocated=True).count()
                    for f in farms}
        for farm in farms:
            rows = rows_by_farm[farm.id]
            usage = recount(inventory, rows, eips[farm.id])
            # what runs is recounted; volumes are allocated atomically and never exceed their quota
            limits = {name: value for name, value in quotas.limits(farm).as_dict().items() if name in usage}
            verdict = FarmVerdict(farm.name, usage, limits, [r for r in limits if usage[r] > limits[r]])
            result.farms.append(verdict)
            if not verdict.over:
                continue
            for instance in _plan(verdict, rows, inventory, "stop" if policy == "stop" else "terminate"):
                verdict.actions.append({"instance": instance.id, "action": policy, "created_at": instance.created_at.isoformat()})
                if policy == "report" or dry_run:
                    continue
                try:
                    _apply(cloud, instance, policy)
                except InvalidState as exc:  # changed since the count (stopped, terminated...): that state stays
                    verdict.unresolved.append(f"{instance.id} left as it is: {exc}")
                except IvfarmError as exc:
                    result.errors.append(f"{policy} {instance.id}: {exc}")
    return result
