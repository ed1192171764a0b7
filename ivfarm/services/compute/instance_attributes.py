"""ModifyInstanceAttribute: what a farm may change on its instance, and when.

``InstanceType`` and ``UserData`` change a stopped instance only: the domain (vCPUs, memory) and the
NoCloud seed are made again at its next start (``redefine_on_start``). A new size must fit the farm's
quota (checked as a start would, farm row locked) and a host: its own, or another of its class the
scheduler finds, to which a ``migrate`` job moves it at once (its disks stay as they are).
``InstanceInitiatedShutdownBehavior`` and ``DisableApiTermination`` change any live instance.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from ivfarm.errors import InvalidInput, InvalidState
from ivfarm.services.compute import placement_groups
from ivfarm.services.compute.hosts import capacities
from ivfarm.services.compute.instances import get_instance
from ivfarm.services.compute.scheduler import Request, Scheduler
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy import quotas
from ivfarm.store import jobs
from ivfarm.store.models import Flavor, Instance
from ivfarm.store.states import InstanceState as S

SHUTDOWN_BEHAVIORS = ("stop", "terminate")
MIGRATE = "migrate"


@dataclass(frozen=True)
class AttributeChange:
    """One attribute to change (the others None)."""

    instance_type: str | None = None
    user_data: bytes | None = None
    clear_user_data: bool = False  # UserData given empty
    shutdown_behavior: str | None = None
    disable_api_termination: bool | None = None


def _resize(cloud: CloudContext, session: Session, instance: Instance, flavor_name: str) -> str | None:
    """Give the stopped instance a new flavor; returns the host it must move to, if its own lacks room."""
    flavor = session.get(Flavor, flavor_name)
    if flavor is None:
        raise InvalidInput(f"instance type {flavor_name!r} does not exist")
    if instance.farm_id is not None:
        farm = cloud.store.lock_farm(session, instance.farm_id)
        quotas.admissible_count(session, farm, flavor.vcpus, flavor.memory_mb, 0, 1, 1)
    cloud.store.lock_scheduler(session)
    wanted = Request(flavor.vcpus, flavor.memory_mb, 0, instance.host_class)
    hosts = capacities(cloud, session, instance.host_class)
    here = instance.host.name if instance.host else None
    target = None
    if not any(h.name == here and h.fits(wanted) for h in hosts):  # NoValidHost when no other host has room
        spread = (placement_groups.member_hosts(session, instance.placement_group_id, except_instance=instance.id)
                  if instance.placement_group_id else set())
        others = [h for h in hosts if h.name != here and h.name not in spread]
        target = Scheduler.from_config(cloud.config).place([wanted], others)[0].name
    instance.flavor_name, instance.vcpus, instance.memory_mb = flavor.name, flavor.vcpus, flavor.memory_mb
    return target


def modify(cloud: CloudContext, farm_id: int | None, instance_id: str, change: AttributeChange) -> None:
    """Apply one attribute change in one transaction (InvalidState when the instance's state forbids it)."""
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id, farm_id)
        if instance.state in (S.SHUTTING_DOWN, S.TERMINATED):
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        rebuilds = change.instance_type is not None or change.user_data is not None or change.clear_user_data
        if rebuilds and instance.state != S.STOPPED:
            raise InvalidState(f"instance {instance_id} is {instance.state}; it must be stopped for this change")
        target = None
        if change.instance_type is not None and change.instance_type != instance.flavor_name:
            target = _resize(cloud, session, instance, change.instance_type)
            instance.redefine_on_start = True
        if change.user_data is not None or change.clear_user_data:
            instance.user_data = change.user_data
            instance.redefine_on_start = True
        if change.shutdown_behavior is not None:
            if change.shutdown_behavior not in SHUTDOWN_BEHAVIORS:
                raise InvalidInput(f"shutdown behavior must be one of {', '.join(SHUTDOWN_BEHAVIORS)}")
            instance.shutdown_behavior = change.shutdown_behavior
        if change.disable_api_termination is not None:
            instance.disable_api_termination = change.disable_api_termination
        if target is not None:
            jobs.enqueue(session, MIGRATE, instance_id=instance_id, farm_id=instance.farm_id,
                         host_id=instance.host_id, payload={"to": target})
