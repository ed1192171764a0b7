"""Re-placing an existing instance on another host of its class (migration, drain, failover).

The new host is recorded at once, inside the scheduler's transaction, so its capacity is held
while the instance moves; the caller puts the instance back with ``place_on`` if the move fails. An
instance of a spread placement group never moves onto a host holding another of its group.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ivfarm.errors import InvalidInput, InvalidState, NoValidHost
from ivfarm.services.compute import placement_groups
from ivfarm.services.compute.hosts import capacities, get_host
from ivfarm.services.compute.instances import get_instance
from ivfarm.services.compute.scheduler import Request, Scheduler
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import ACTIVE_STATES


@dataclass(frozen=True)
class Move:
    """An instance re-placed from ``source`` to ``target``, as read when it was reserved."""

    instance_id: str
    host_class: str
    state: str
    source: str
    source_uri: str
    target: str
    target_uri: str
    target_peer_uri: str  # how the source's libvirt reaches the target (live migration)


def reserve(cloud: CloudContext, instance_id: str, to: str | None, states: Sequence[str]) -> Move:
    """Choose a host for the instance (``to``, or the scheduler's pick among the others) and record it."""
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id)
        if instance.state not in states:
            raise InvalidState(f"instance {instance_id} is {instance.state}; this needs it {' or '.join(states)}")
        if instance.host is None:
            raise InvalidState(f"instance {instance_id} is on no host")
        source = instance.host
        active = instance.state in ACTIVE_STATES
        request = Request(instance.vcpus if active else 0, instance.memory_mb if active else 0,
                          instance.disk_gb, instance.host_class)
        cloud.store.lock_scheduler(session)
        spread = (placement_groups.member_hosts(session, instance.placement_group_id, except_instance=instance.id)
                  if instance.placement_group_id else set())
        others = [c for c in capacities(cloud, session) if c.name != source.name]
        if to is not None:
            if to == source.name:
                raise InvalidInput(f"instance {instance_id} already runs on {to}")
            target = get_host(session, to)
            chosen = next(c for c in others if c.name == to)
            if target.host_class != instance.host_class:
                raise InvalidInput(f"host {to} is a {target.host_class} host; {instance_id} needs a {instance.host_class} host")
            if not chosen.enabled:
                raise InvalidState(f"host {to} is disabled or not up")
            if not chosen.fits(request):
                raise NoValidHost(f"host {to} has no room for {instance_id}")
            if to in spread:
                raise NoValidHost(f"host {to} holds another instance of {instance_id}'s spread placement group")
        else:
            others = [c for c in others if c.name not in spread]
            target = get_host(session, Scheduler.from_config(cloud.config).place([request], others)[0].name)
        instance.host_id = target.id
        return Move(instance.id, instance.host_class, instance.state, source.name, source.uri,
                    target.name, target.uri, target.migration_uri or target.uri)


def place_on(cloud: CloudContext, instance_id: str, host_name: str) -> None:
    """Record the instance on ``host_name`` (undoing a reservation)."""
    with cloud.store.write() as session:
        get_instance(session, instance_id).host_id = get_host(session, host_name).id
