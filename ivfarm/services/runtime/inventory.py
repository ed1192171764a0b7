"""What really runs: every domain of this cloud on every reachable host, read in parallel."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import select

from drivers.hypervisor.base import DomainCounters, DomainStatus
from ivfarm.errors import HypervisorError
from ivfarm.ids import is_valid
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import Host


@dataclass(frozen=True)
class SeenDomain:
    """A domain of this cloud found on a host."""

    host: str
    uri: str
    name: str
    state: str  # running | stopped | paused | crashed | other
    counters: DomainCounters | None = None  # read when the scan asked for them and the domain runs


@dataclass
class Inventory:
    """Domains of this cloud by instance id, hosts that answered and hosts that did not."""

    domains: dict[str, SeenDomain] = field(default_factory=dict)
    copies: dict[str, list[SeenDomain]] = field(default_factory=dict)  # every copy, by instance id
    reachable: dict[str, str] = field(default_factory=dict)  # host name -> uri
    unreachable: dict[str, str] = field(default_factory=dict)  # host name -> error

    def running(self, instance_id: str) -> bool:
        """True when the instance's domain runs (or is paused: it still holds its resources)."""
        seen = self.domains.get(instance_id)
        return seen is not None and seen.state in ("running", "paused")


def scan(cloud: CloudContext, counters: bool = False) -> Inventory:
    """List the domains of every registered host (hosts that fail to answer are reported, not fatal);
    with ``counters``, each running domain's CPU and network counters too."""
    with cloud.store.read() as session:
        hosts = [(h.name, h.uri) for h in session.scalars(select(Host).order_by(Host.name))]
    inventory = Inventory()

    def list_one(host: tuple[str, str]) -> tuple[str, str, list[DomainStatus] | str, dict[str, DomainCounters]]:
        name, uri = host
        try:
            domains = cloud.hypervisor.list_domains(uri)
            return name, uri, domains, cloud.hypervisor.domain_counters(uri) if counters else {}
        except HypervisorError as exc:
            return name, uri, str(exc), {}

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(hosts)))) as pool:
        for name, uri, result, read in pool.map(list_one, hosts):
            if isinstance(result, str):
                inventory.unreachable[name] = result
                continue
            inventory.reachable[name] = uri
            for domain in result:
                if domain.cloud == cloud.cloud_id and domain.ivfarm_id and is_valid(domain.ivfarm_id, "instance"):
                    seen = SeenDomain(name, uri, domain.name, domain.state, read.get(domain.name))
                    inventory.copies.setdefault(domain.ivfarm_id, []).append(seen)
                    if domain.ivfarm_id not in inventory.domains or seen.state == "running":
                        inventory.domains[domain.ivfarm_id] = seen
    return inventory
