"""A farm's EC2 placement groups. ``spread`` is the one strategy served: no two live instances of a
group (any state but terminated) share a host, so a host loss takes at most one of them.

Members are counted inside the scheduler's lock by whoever places an instance (launch, migration,
resize), and deletion takes the same lock, so a group is never deleted under a launch that uses it.
"""
from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, NotFound
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy.tags import add_tags, drop_resource_tags
from ivfarm.store.models import Host, Instance, PlacementGroup
from ivfarm.store.states import InstanceState as S

STRATEGIES = ("spread",)
MAX_NAME = 255


def validate_name(name: str) -> None:
    """1-255 printable ASCII characters."""
    if not 1 <= len(name) <= MAX_NAME or not all(" " <= c <= "~" for c in name):
        raise InvalidInput(f"a placement group name is 1 to {MAX_NAME} printable ASCII characters")


def create(cloud: CloudContext, farm_id: int, name: str, strategy: str,
           tags: Mapping[str, str] | None = None) -> PlacementGroup:
    """Record a new group (AlreadyExists when the farm has one by that name)."""
    validate_name(name)
    if strategy not in STRATEGIES:
        raise InvalidInput(f"placement strategy must be one of {', '.join(STRATEGIES)}")
    group = PlacementGroup(id=ids.new_id("placement_group"), farm_id=farm_id, name=name, strategy=strategy)
    try:
        with cloud.store.write() as session:
            if session.scalar(select(PlacementGroup.id).where(PlacementGroup.farm_id == farm_id,
                                                              PlacementGroup.name == name)):
                raise AlreadyExists(f"The Placement Group '{name}' already exists.")
            session.add(group)
            session.flush()
            add_tags(session, farm_id, {group.id: "placement-group"}, tags or {})
    except IntegrityError as exc:  # a concurrent request took the name first
        raise AlreadyExists(f"The Placement Group '{name}' already exists.") from exc
    return group


def list_groups(cloud: CloudContext, farm_id: int) -> list[PlacementGroup]:
    """The farm's groups by name."""
    with cloud.store.read() as session:
        return list(session.scalars(select(PlacementGroup).where(PlacementGroup.farm_id == farm_id)
                                    .order_by(PlacementGroup.name)))


def find(session: Session, farm_id: int, name: str | None = None, group_id: str | None = None) -> PlacementGroup:
    """One of the farm's groups by name or id; another farm's group is NotFound like a missing one."""
    query = select(PlacementGroup).where(PlacementGroup.farm_id == farm_id)
    query = query.where(PlacementGroup.id == group_id) if group_id is not None else query.where(
        PlacementGroup.name == name)
    group = session.scalar(query)
    if group is None:
        raise NotFound("placement_group", group_id if group_id is not None else str(name))
    return group


def member_hosts(session: Session, group_id: str, except_instance: str | None = None) -> set[str]:
    """Names of the hosts holding live members of the group (``except_instance`` left out)."""
    query = (select(Host.name).join(Instance, Instance.host_id == Host.id)
             .where(Instance.placement_group_id == group_id, Instance.state != S.TERMINATED.value))
    if except_instance is not None:
        query = query.where(Instance.id != except_instance)
    return set(session.scalars(query))


def delete(cloud: CloudContext, farm_id: int, name: str) -> str:
    """Delete a group and its tags; InUse while it has live members. Returns its id."""
    with cloud.store.write() as session:
        cloud.store.lock_scheduler(session)  # no launch is placing into it meanwhile
        group = find(session, farm_id, name=name)
        if session.scalar(select(Instance.id).where(Instance.placement_group_id == group.id,
                                                    Instance.state != S.TERMINATED.value).limit(1)):
            raise InUse(f"The placement group '{name}' is in use and may not be deleted.")
        for instance in session.scalars(select(Instance).where(Instance.placement_group_id == group.id)):
            instance.placement_group_id = None  # terminated members forget it
        drop_resource_tags(session, farm_id, [group.id])
        session.delete(group)
        return group.id
