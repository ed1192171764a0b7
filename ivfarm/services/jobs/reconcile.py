"""``ivfarm reconcile``: compare the store with every host and repair what a crash or drift left.

- a pending or shutting-down instance whose operation died is finished or rolled back;
- a VM that died is marked stopped (or restarted when its policy says so);
- domains, volumes, seeds, console logs, farm segments and routers of this cloud that the store
  does not know are reported and, unless ``dry_run``, removed;
- farms left half-created are rolled back, half-deleted ones finished;
- every active farm's router is re-applied from the store.
Running it twice changes nothing the second time.
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from drivers.storage.base import disk_names
from ivfarm.errors import IvfarmError
from ivfarm.services.compute import instances, provisioning
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.services.farms import lifecycle
from ivfarm.services.network.routers import router_key, sync_router
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.inventory import Inventory, SeenDomain, scan
from ivfarm.services.runtime.locks import job_lock
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import Farm, Host, Instance

log = logging.getLogger(__name__)
_FILE_ID = re.compile(r"^(i-[0-9a-f]{8,17})[-.]")


@dataclass
class Finding:
    """One discrepancy and what was (or would be) done about it."""

    kind: str
    target: str
    detail: str
    action: str


@dataclass
class ReconcileReport:
    dry_run: bool
    findings: list[Finding] = field(default_factory=list)
    unreachable_hosts: dict[str, str] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A human summary."""
        out = [f"{f.kind}: {f.target}: {f.detail} -> {f.action}" for f in self.findings]
        out += [f"host {h} unreachable: {e}" for h, e in self.unreachable_hosts.items()]
        out += [f"error: {e}" for e in self.errors]
        verb = "would change" if self.dry_run else "changed"
        out.append(f"{len(self.findings)} finding(s); {verb} {sum(1 for f in self.findings if f.action != 'none')}")
        return out


class _Run:
    """One reconcile pass; ``act`` runs a repair unless dry-run, recording errors instead of stopping."""

    def __init__(self, cloud: CloudContext, dry_run: bool) -> None:
        self.cloud = cloud
        self.report = ReconcileReport(dry_run=dry_run)
        self.busy = journal.busy_targets(cloud)
        self._host_failures()
        self.inventory: Inventory = scan(cloud)
        self.report.unreachable_hosts = dict(self.inventory.unreachable)

    def _host_failures(self) -> None:
        """Hosts that stopped answering: wait out the grace period, then fence and recover."""
        for host in check_hosts(self.cloud, dry_run=self.report.dry_run).hosts:
            if host.action == "none":
                continue
            moved = ", ".join(f"{i.instance_id} {i.action}" for i in host.instances) or "no instance moved"
            self.report.findings.append(Finding("host", host.host, host.error or host.status, f"{host.action} ({moved})"))

    def act(self, kind: str, target: str, detail: str, action: str, repair) -> None:  # type: ignore[no-untyped-def]
        self.report.findings.append(Finding(kind, target, detail, action))
        if self.report.dry_run:
            return
        try:
            repair()
        except IvfarmError as exc:
            self.report.errors.append(f"{kind} {target}: {exc}")

    # -- farms -----------------------------------------------------------------------------
    def farms(self) -> None:
        with self.cloud.store.read() as session:
            stuck = [(f.name, f.status) for f in session.scalars(select(Farm).where(Farm.status != "active"))]
        for name, status in stuck:
            if f"farm:{name}" in self.busy:
                continue
            verb = "roll back" if status == "creating" else "finish deleting"
            self.act("farm", name, f"left {status} by an interrupted operation", verb,
                     lambda name=name: lifecycle.delete_farm(self.cloud, name))

    # -- instances -------------------------------------------------------------------------
    def instances(self) -> None:
        with self.cloud.store.read() as session:
            rows = [(i.id, i.state, i.host.name if i.host else None, i.restart_policy)
                    for i in session.scalars(select(Instance).where(Instance.state != "terminated"))]
        for instance_id, state, host, policy in rows:
            if instance_id in self.busy or (host is not None and host not in self.inventory.reachable):
                continue
            seen = self.inventory.domains.get(instance_id)
            if state == "pending":
                if seen is not None and seen.state == "running":
                    self.act("instance", instance_id, "provisioning finished but was not recorded", "mark running",
                             lambda i=instance_id: instances.set_state(self.cloud, i, "running"))
                else:
                    self.act("instance", instance_id, "provisioning was interrupted", "roll back",
                             lambda i=instance_id: self._roll_back(i))
            elif state == "shutting-down":
                self.act("instance", instance_id, "termination was interrupted", "finish terminating",
                         lambda i=instance_id: provisioning.teardown(self.cloud, i))
            elif seen is None:
                self.act("instance", instance_id, f"{state} in the store but its domain is gone", "terminate",
                         lambda i=instance_id: self._vanished(i))
            elif state in ("running", "rebooting") and seen.state in ("stopped", "crashed"):
                if policy == "always":
                    self.act("instance", instance_id, f"died ({seen.state})", "restart",
                             lambda i=instance_id, s=seen: self._restart(i, s.uri, s.name))
                else:
                    self.act("instance", instance_id, f"died ({seen.state})", "mark stopped",
                             lambda i=instance_id: instances.set_state(self.cloud, i, "stopped", "Server.InstanceDied"))
            elif state in ("stopped", "stopping") and seen.state == "running":
                self.act("instance", instance_id, "runs although stopped in the store", "mark running",
                         lambda i=instance_id: instances.set_state(self.cloud, i, "running"))

    def _roll_back(self, instance_id: str) -> None:
        provisioning.begin_terminate(self.cloud, instance_id)
        provisioning.teardown(self.cloud, instance_id)
        instances.set_state(self.cloud, instance_id, "terminated", "Server.InternalError: provisioning was interrupted")

    def _vanished(self, instance_id: str) -> None:
        provisioning.teardown(self.cloud, instance_id)
        instances.set_state(self.cloud, instance_id, "terminated", "Server.InternalError: the domain disappeared")

    def _restart(self, instance_id: str, uri: str, name: str) -> None:
        self.cloud.hypervisor.start(uri, name)
        instances.set_state(self.cloud, instance_id, "running")

    # -- orphans ---------------------------------------------------------------------------
    def orphans(self) -> None:
        with self.cloud.store.read() as session:
            placed = {i.id: (i.host.name if i.host else None)
                      for i in session.scalars(select(Instance).where(Instance.state != "terminated"))}
            known = set(placed)
            host_classes = {h.name: h.host_class for h in session.scalars(select(Host))}
            vlans = {f.vlan for f in session.scalars(select(Farm))}
        keep = known | self.busy
        for instance_id, copies in self.inventory.copies.items():
            for seen in copies:
                if instance_id not in keep:
                    self.act("domain", seen.name, f"on {seen.host}, unknown to the store", "remove",
                             lambda s=seen: self.cloud.hypervisor.undefine(s.uri, s.name))
                elif instance_id not in self.busy and seen.host != placed.get(instance_id):
                    self.act("domain", seen.name, f"stale copy on {seen.host} (the instance lives on "
                             f"{placed.get(instance_id)})", "remove", lambda s=seen, i=instance_id: self._remove_copy(i, s))
        for host, uri in self.inventory.reachable.items():
            storage = self.cloud.storage(host_classes[host])
            for kind, names, remove in (
                ("volume", storage.list_names(uri), storage.delete),
                ("seed", self.cloud.seeds.list_names(uri), self.cloud.seeds.delete),
                ("console log", self.cloud.consoles.list_names(uri), self.cloud.consoles.delete),
            ):
                for name in names:
                    match = _FILE_ID.match(name)
                    if match and match.group(1) not in keep:
                        self.act(kind, f"{host}:{name}", "belongs to no instance", "remove",
                                 lambda u=uri, n=name, r=remove: r(u, n))
            low, high = self.cloud.config.get("network.vlan_range")
            for vlan in self.cloud.segments.list_vlans(uri):
                if low <= vlan <= high and vlan not in vlans:
                    self.act("farm segment", f"{host}:vlan {vlan}", "belongs to no farm", "remove",
                             lambda u=uri, v=vlan: self.cloud.segments.remove(u, v))
        self._orphan_routers(vlans)

    def _remove_copy(self, instance_id: str, seen: SeenDomain) -> None:
        """Undefine a copy left on a host the instance moved away from (and its disks, unless shared)."""
        self.cloud.hypervisor.undefine(seen.uri, seen.name)
        with self.cloud.store.read() as session:
            host_class = session.scalar(select(Host.host_class).where(Host.name == seen.host))
        storage = self.cloud.storage(host_class or "worker")
        if not storage.shared:
            for name in disk_names(instance_id):
                storage.delete(seen.uri, name)

    def _orphan_routers(self, vlans: set[int]) -> None:
        backend = self.cloud.router_backend(str(self.cloud.config.get("vrouter.backend")))
        if backend is None:
            return
        low, high = self.cloud.config.get("network.vlan_range")
        for key in backend.list_keys():
            vlan = int(key[1:]) if key[1:].isdigit() else -1
            if low <= vlan <= high and vlan not in vlans:
                self.act("router", key, "belongs to no farm", "remove", lambda k=key: backend.destroy(k))

    # -- routers and usage -------------------------------------------------------------------
    def routers_and_usage(self) -> None:
        with self.cloud.store.read() as session:
            active = [(f.id, f.name, f.vlan, f.router_backend)
                      for f in session.scalars(select(Farm).where(Farm.status == "active"))]
        for farm_id, name, vlan, backend_name in active:
            backend = self.cloud.router_backend(backend_name)
            if backend is not None and not backend.exists(router_key(vlan)):
                self.act("router", router_key(vlan), f"router of farm {name} is missing", "rebuild",
                         lambda f=farm_id: sync_router(self.cloud, f))
            elif not self.report.dry_run:
                try:
                    sync_router(self.cloud, farm_id)
                except IvfarmError as exc:
                    self.report.errors.append(f"router of farm {name}: {exc}")
            with self.cloud.store.read() as session:
                self.report.usage[name] = quotas.usage(session, farm_id).as_dict()


def reconcile(cloud: CloudContext, dry_run: bool = False) -> ReconcileReport:
    """One reconcile pass (holding its lock)."""
    with job_lock(cloud, "reconcile"):
        run = _Run(cloud, dry_run)
        run.farms()
        run.instances()
        run.orphans()
        run.routers_and_usage()
        return run.report
