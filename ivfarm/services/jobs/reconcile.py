"""``ivfarm reconcile``: compare the store with every host and repair what a crash or drift left.

- a pending or shutting-down instance whose operation died is finished or rolled back;
- a VM that died is marked stopped (or restarted when its policy says so);
- domains, volumes, seeds, console logs, farm segments and routers of this cloud that the store
  does not know are reported and, unless ``dry_run``, removed;
- farms left half-created are rolled back, half-deleted ones finished;
- graceful drains whose shutdown time has passed move or end their VMs (services.compute.drains);
- images a crash left pending (their CreateImage job lost) lose their half-made file and are marked
  failed; files of deregistered images no instance uses any more are removed;
- every active farm's router is re-applied from the store.
Running it twice changes nothing the second time.
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from drivers.storage.base import disk_names
from ivfarm.errors import IvfarmError, TransitionLost
from ivfarm.services.compute import drains, image_capture, instances, provisioning, volume_repair
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.services.farms import lifecycle
from ivfarm.services.images import sharing
from ivfarm.services.network.routers import router_key, sync_router
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.inventory import Inventory, SeenDomain, scan
from ivfarm.services.runtime.locks import job_lock
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import IN_FLIGHT, Farm, Host, Instance
from ivfarm.store.states import InstanceState as S
from ivfarm.store.transitions import compare_and_set

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


class LeftAlone(IvfarmError):
    """The item is busy after all (its work is in flight), so the repair gives way."""


class _Run:
    """One reconcile pass; ``act`` runs a repair unless dry-run, recording errors instead of stopping.

    Whether work is in flight is decided row by row when the row is looked at, and again inside
    the transaction that acts on it (a compare-and-set on the state, owner and heartbeat judged):
    an instance launched or claimed meanwhile is left alone.
    """

    def __init__(self, cloud: CloudContext, dry_run: bool) -> None:
        self.cloud = cloud
        self.report = ReconcileReport(dry_run=dry_run)
        journal.busy_targets(cloud)  # drops the journal rows of work whose process is gone
        self._host_failures()
        self.inventory: Inventory = scan(cloud)
        self.report.unreachable_hosts = dict(self.inventory.unreachable)

    def _host_failures(self) -> None:
        """Hosts that stopped answering: wait out the grace period, then fence and recover."""
        try:
            checked = check_hosts(self.cloud, dry_run=self.report.dry_run).hosts
        except IvfarmError as exc:
            self.report.errors.append(f"host failure check: {exc}")
            return
        for host in checked:
            if host.action == "none":
                continue
            moved = ", ".join(f"{i.instance_id} {i.action}" for i in host.instances) or "no instance moved"
            self.report.findings.append(Finding("host", host.host, host.error or host.status, f"{host.action} ({moved})"))

    def act(self, kind: str, target: str, detail: str, action: str, repair) -> None:  # type: ignore[no-untyped-def]
        finding = Finding(kind, target, detail, action)
        self.report.findings.append(finding)
        if self.report.dry_run:
            return
        try:
            repair()
        except (LeftAlone, TransitionLost) as exc:  # changed or claimed since it was looked at: the winner stays
            log.info("reconcile left %s %s alone: %s", kind, target, exc)
            finding.detail, finding.action = f"{detail}; changed meanwhile ({exc})", "none"
        except IvfarmError as exc:  # reported; the pass goes on with the next item
            self.report.errors.append(f"{kind} {target}: {exc}")

    def _busy(self, target: str) -> bool:
        with self.cloud.store.read() as session:
            return journal.target_busy(self.cloud, session, target)

    # -- farms -----------------------------------------------------------------------------
    def farms(self) -> None:
        with self.cloud.store.read() as session:
            stuck = [(f.name, f.status) for f in session.scalars(select(Farm).where(Farm.status != "active"))]
        for name, status in stuck:
            if self._busy(f"farm:{name}"):
                continue
            verb = "roll back" if status == "creating" else "finish deleting"
            self.act("farm", name, f"left {status} by an interrupted operation", verb,
                     lambda name=name, status=status: self._finish_farm(name, status))

    def _finish_farm(self, name: str, status: str) -> None:
        with self.cloud.store.read() as session:
            now = session.scalar(select(Farm.status).where(Farm.name == name))
            if now != status or journal.target_busy(self.cloud, session, f"farm:{name}"):
                raise LeftAlone(f"farm {name} is {now} and busy again")
        lifecycle.delete_farm(self.cloud, name)

    # -- instances -------------------------------------------------------------------------
    def instances(self) -> None:
        with self.cloud.store.read() as session:
            ids = list(session.scalars(select(Instance.id).where(Instance.state != S.TERMINATED).order_by(Instance.id)))
        for instance_id in ids:
            with self.cloud.store.read() as session:  # decided now, row by row
                row = session.get(Instance, instance_id)
                if row is None or row.state == S.TERMINATED or journal.instance_busy(self.cloud, session, row):
                    continue
                state, host, policy = row.state, row.host.name if row.host else None, row.restart_policy
                behavior = row.shutdown_behavior
            if host is not None and host not in self.inventory.reachable:
                continue
            self._instance(instance_id, state, policy, self.inventory.domains.get(instance_id), behavior)

    def _instance(self, instance_id: str, state: str, policy: str, seen: SeenDomain | None,
                  behavior: str = "stop") -> None:
        if state == S.PENDING:
            if seen is not None and seen.state == "running":
                self.act("instance", instance_id, "provisioning finished but was not recorded", "mark running",
                         lambda: self._take(instance_id, state, S.RUNNING))
            else:
                self.act("instance", instance_id, "provisioning was interrupted", "roll back",
                         lambda: self._tear_down(instance_id, state, "Server.InternalError: provisioning was interrupted"))
        elif state == S.SHUTTING_DOWN:
            self.act("instance", instance_id, "termination was interrupted", "finish terminating",
                     lambda: self._tear_down(instance_id, state, None))
        elif seen is None:
            self.act("instance", instance_id, f"{state} in the store but its domain is gone", "terminate",
                     lambda: self._tear_down(instance_id, state, "Server.InternalError: the domain disappeared"))
        elif state in (S.RUNNING, S.REBOOTING) and seen.state in ("stopped", "crashed"):
            if policy == "always":
                self.act("instance", instance_id, f"died ({seen.state})", "restart",
                         lambda: self._restart(instance_id, state, seen.uri, seen.name))
            elif seen.state == "stopped" and behavior == "terminate":  # InstanceInitiatedShutdownBehavior
                self.act("instance", instance_id, "the guest powered off", "terminate",
                         lambda: self._tear_down(instance_id, state,
                                                 "Client.InstanceInitiatedShutdown: Instance initiated shutdown"))
            elif seen.state == "stopped":
                self.act("instance", instance_id, "the guest powered off", "mark stopped",
                         lambda: self._take(instance_id, state, S.STOPPED,
                                            "Client.InstanceInitiatedShutdown: Instance initiated shutdown"))
            else:
                self.act("instance", instance_id, f"died ({seen.state})", "mark stopped",
                         lambda: self._take(instance_id, state, S.STOPPED, "Server.InstanceDied"))
        elif state in (S.STOPPED, S.STOPPING) and seen.state == "running":
            self.act("instance", instance_id, "runs although stopped in the store", "mark running",
                     lambda: self._take(instance_id, state, S.RUNNING))
        elif state == S.STOPPING and seen.state == "stopped":
            self.act("instance", instance_id, "stop was interrupted after the domain stopped", "mark stopped",
                     lambda: self._take(instance_id, state, S.STOPPED, "User initiated"))

    def _take(self, instance_id: str, state: str, new: str, reason: str | None = None) -> None:
        """Compare-and-set from the state seen, if no live process claimed the instance since."""
        with self.cloud.store.write() as session:
            row = session.get(Instance, instance_id)
            if row is None:
                raise LeftAlone(f"instance {instance_id} is gone")
            if journal.instance_busy(self.cloud, session, row):
                raise LeftAlone(f"instance {instance_id} is {row.state}, owned by live {row.owner}")
            compare_and_set(session, instance_id, new, expect=(state,), reason=reason, owner=journal.me(),
                            guard=journal.stale_guard(row))
        if new in IN_FLIGHT:
            journal.watch(self.cloud)

    def _tear_down(self, instance_id: str, state: str, reason: str | None) -> None:
        self._take(instance_id, state, S.SHUTTING_DOWN)  # this process owns the teardown now
        if reason is None:
            provisioning.teardown(self.cloud, instance_id)
        else:
            provisioning.teardown(self.cloud, instance_id, reason)

    def _restart(self, instance_id: str, state: str, uri: str, name: str) -> None:
        self._take(instance_id, state, S.PENDING)
        try:
            self.cloud.hypervisor.start(uri, name)
        except IvfarmError:
            instances.set_state(self.cloud, instance_id, S.STOPPED, "Server.InstanceDied", expect=(S.PENDING,))
            raise
        instances.set_state(self.cloud, instance_id, S.RUNNING, expect=(S.PENDING,))

    # -- volumes and snapshots -----------------------------------------------------------
    def volumes(self) -> None:
        for item in volume_repair.stuck(self.cloud):
            self.act(item.kind, item.ident, f"left {item.state} with no job working on it", item.action,
                     lambda i=item: volume_repair.repair(self.cloud, i))

    # -- orphans ---------------------------------------------------------------------------
    def orphans(self) -> None:
        with self.cloud.store.read() as session:
            placed = {i.id: (i.host.name if i.host else None)
                      for i in session.scalars(select(Instance).where(Instance.state != S.TERMINATED))}
            known = set(placed)
            host_classes = {h.name: h.host_class for h in session.scalars(select(Host))}
            vlans = {f.vlan for f in session.scalars(select(Farm))}
        for instance_id, copies in self.inventory.copies.items():
            for seen in copies:
                if instance_id not in known:
                    # unknown now (not at the start), and still there (this pass may have torn it down)
                    if self._unknown(instance_id) and self.cloud.hypervisor.status(seen.uri, seen.name) is not None:
                        self.act("domain", seen.name, f"on {seen.host}, unknown to the store", "remove",
                                 lambda s=seen, i=instance_id: self._remove_unknown(i, lambda: self.cloud.hypervisor.undefine(s.uri, s.name)))
                elif seen.host != placed.get(instance_id) and not self._busy(instance_id):
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
                    owner_id = match.group(1) if match else None
                    if owner_id is not None and owner_id not in known and self._unknown(owner_id):
                        self.act(kind, f"{host}:{name}", "belongs to no instance", "remove",
                                 lambda u=uri, n=name, r=remove, i=owner_id: self._remove_unknown(i, lambda: r(u, n)))
            low, high = self.cloud.config.get("network.vlan_range")
            for vlan in self.cloud.segments.list_vlans(uri):
                if low <= vlan <= high and vlan not in vlans:
                    self.act("farm segment", f"{host}:vlan {vlan}", "belongs to no farm", "remove",
                             lambda u=uri, v=vlan: self.cloud.segments.remove(u, v))
        self._orphan_routers(vlans)

    def _unknown(self, instance_id: str) -> bool:
        """True when no live instance and no work in flight claims the id (asked now, not at the start)."""
        with self.cloud.store.read() as session:
            row = session.get(Instance, instance_id)
            if row is not None and row.state != S.TERMINATED:
                return False
            return not journal.target_busy(self.cloud, session, instance_id)

    def _remove_unknown(self, instance_id: str, remove) -> None:  # type: ignore[no-untyped-def]
        if not self._unknown(instance_id):  # launched (or claimed) since it was looked at
            raise LeftAlone(f"{instance_id} is known to the store now")
        remove()

    def _remove_copy(self, instance_id: str, seen: SeenDomain) -> None:
        """Undefine a copy left on a host the instance moved away from (and its disks, unless shared)."""
        with self.cloud.store.read() as session:
            row = session.get(Instance, instance_id)
            if row is None or (row.host.name if row.host else None) == seen.host or journal.instance_busy(self.cloud, session, row):
                raise LeftAlone(f"{instance_id} moved or is being moved")
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

    # -- graceful drains -----------------------------------------------------------------------
    def drains(self) -> None:
        try:
            due = drains.process_due(self.cloud, dry_run=self.report.dry_run)
        except IvfarmError as exc:
            self.report.errors.append(f"drains: {exc}")
            return
        for view in due.finished + due.pending:
            done = ", ".join(f"{i} {what}" for i, what in view.result.items()) or "no instance left"
            action = "none" if view.state == "cancelled" else f"{view.state} ({done})"
            self.report.findings.append(Finding("drain", view.target, f"grace of {view.grace_s} s ended", action))
            self.report.errors += [f"drain {view.target}: {i} {what}" for i, what in view.result.items()
                                   if what.startswith("failed")]

    # -- images ----------------------------------------------------------------------------
    def images(self) -> None:
        for image_id in image_capture.stuck_images(self.cloud):
            self.act("image", image_id, "pending but no job is making it", "mark failed",
                     lambda i=image_id: image_capture.fail_stuck(self.cloud, i))
        for image_id in sharing.purge_deregistered(self.cloud, dry_run=True):
            self.act("image", image_id, "deregistered and no longer used", "remove its file",
                     lambda: sharing.purge_deregistered(self.cloud))

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
        run.volumes()
        run.orphans()
        run.drains()
        run.images()
        run.routers_and_usage()
        return run.report
