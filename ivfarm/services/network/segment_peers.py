"""Which hosts carry a farm's segment, and each one's forwarding toward the others (VXLAN FDB).

A host carries a farm while it runs (or holds) one of the farm's live instances, or is the router
host (``vrouter.host_uri``) of a farm with a router, and answers (status ``up``: the VMs of an
unreachable or fenced host are down, and failover rebuilds them elsewhere). ``sync_segment`` reads that from the store and
gives every carrying host exactly its peers (underlay address -> MACs of the farm's VMs there);
a registered host that no longer carries the farm but still has its segment is left with no remote
entries. Idempotent: the provisioner, migration, failover and drain call it after each change.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from drivers.network.host_shell import HostShell, LocalShell, NetnsShell, SshShell
from drivers.network.vxlan import HostLink
from drivers.uris import uri_is_local
from ivfarm.errors import IvfarmError, NetworkError
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.locks import run_lock
from ivfarm.store import Store
from ivfarm.store.models import LIVE_STATES, Farm, Host, Instance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Carrier:
    """A host that carries the farm's segment: its URI, underlay address and the farm's MACs there."""

    uri: str
    underlay: str | None
    macs: tuple[str, ...]


def host_shell(host: Host) -> HostShell:
    """Where the host's network commands run: its namespace, this machine, or its SSH endpoint."""
    if host.netns:
        return NetnsShell(host.netns)
    if uri_is_local(host.uri):
        return LocalShell()
    if host.ssh_target:
        user, _, rest = host.ssh_target.rpartition("@")
        name, _, port = rest.partition(":")
        return SshShell(user or "root", name, int(port or 22))
    raise NetworkError(f"host {host.name} is remote and has no --ssh-target: its farm segments cannot be set up")


def host_link(store: Store, uri: str) -> HostLink:
    """The registered host at ``uri`` as the VXLAN segments reach it (shell and underlay address)."""
    with store.read() as session:
        host = session.scalar(select(Host).where(Host.uri == uri))
        if host is None:
            raise NetworkError(f"no registered host has URI {uri}: register it (with --underlay-address) "
                               "before it carries farm segments")
        if not host.underlay_address:
            raise NetworkError(f"host {host.name} has no underlay address (host add --underlay-address): "
                               "it cannot carry VXLAN farm segments")
        return HostLink(host_shell(host), host.underlay_address)


def host_netns(store: Store, uri: str) -> str | None:
    """The network namespace holding the links of the registered host at ``uri`` (None: its own)."""
    with store.read() as session:
        return session.scalar(select(Host.netns).where(Host.uri == uri))


def carriers(cloud: CloudContext, session: Session, farm: Farm) -> list[Carrier]:
    """The hosts that carry the farm now, with the MACs of the farm's live instances on each."""
    macs: dict[int, list[str]] = {}
    for host_id, mac in session.execute(
        select(Instance.host_id, Instance.mac)
        .where(Instance.farm_id == farm.id, Instance.state.in_(LIVE_STATES), Instance.host_id.is_not(None))
        .order_by(Instance.mac)
    ):
        macs.setdefault(host_id or 0, []).extend([mac] if mac else [])
    # a host that does not answer (unreachable, fenced) is neither set up nor a peer: its VMs are down
    hosts = {h.id: h for h in session.scalars(select(Host).where(Host.id.in_(macs), Host.status == "up"))} \
        if macs else {}
    found = {h.uri: Carrier(h.uri, h.underlay_address, tuple(macs[h.id])) for h in hosts.values()}
    if farm.router_backend != "none":
        router_uri = str(cloud.config.get("vrouter.host_uri"))
        router_host = session.scalar(select(Host).where(Host.uri == router_uri))
        if router_uri not in found and (router_host is None or router_host.status == "up"):
            found[router_uri] = Carrier(router_uri, router_host.underlay_address if router_host else None, ())
    return sorted(found.values(), key=lambda c: c.uri)


def sync_segment(cloud: CloudContext, farm_id: int) -> None:
    """Bring the forwarding of the farm's segment on every host in line with the store (VXLAN
    segments only: bridges and 802.1Q trunks learn)."""
    if cloud.config.get("network.segments") != "vxlan":
        return
    with cloud.store.read() as session:
        farm = session.get(Farm, farm_id)
        if farm is None:
            return
        vlan = farm.vlan
        with run_lock(cloud, f"segment-{vlan}"):
            carrying = carriers(cloud, session, farm)
            others = [h.uri for h in session.scalars(select(Host).where(Host.underlay_address.is_not(None)))
                      if h.uri not in {c.uri for c in carrying}]
            for carrier in carrying:
                peers = {c.underlay: list(c.macs) for c in carrying if c.underlay and c.uri != carrier.uri}
                cloud.segments.ensure(carrier.uri, vlan)
                cloud.segments.set_peers(carrier.uri, vlan, peers)
            for uri in others:  # drained or emptied hosts: no entry toward anyone, and nobody toward them
                try:
                    if vlan in cloud.segments.list_vlans(uri):
                        cloud.segments.set_peers(uri, vlan, {})
                except IvfarmError as exc:  # an unreachable former carrier does not block the others
                    log.warning("segment of farm %s not cleared on %s: %s", farm.name, uri, exc)
