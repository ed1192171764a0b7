"""Reads behind the Describe calls: a farm's rows in a few set-based queries (no per-item queries).

Rows are SQLAlchemy ``Row`` tuples whose attribute names are the model's, so views accept them
and ORM objects alike.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.ec2.errors import malformed, not_found
from ivfarm.store.models import Address, Image, Instance, PlacementGroup, Tag, Volume, utcnow

INSTANCE_COLUMNS = (
    Instance.id, Instance.name, Instance.image_id, Instance.flavor_name, Instance.host_class, Instance.state,
    Instance.state_reason, Instance.ip, Instance.mac, Instance.key_name, Instance.client_token,
    Instance.reservation_id, Instance.launch_index, Instance.created_at, Instance.launched_at,
    Instance.terminated_at, Instance.vcpus, Instance.memory_mb, Instance.disk_gb, Instance.shutdown_behavior,
    Instance.metadata_http_tokens, Instance.metadata_hop_limit, Instance.metadata_http_endpoint,
    Instance.disable_api_termination, Instance.placement_group_id,
)


def check_ids(kind: str, values: Sequence[str]) -> list[str]:
    """The ids, each well formed for ``kind`` (``<Kind>.Malformed`` for the first that is not)."""
    for value in values:
        if not ids.is_valid(value, kind):
            raise malformed(kind, value)
    return list(dict.fromkeys(values))


def visible_instances(session: Session, farm_id: int, visible_s: float,
                      instance_ids: Collection[str] | None = None) -> list[Any]:
    """The farm's instances, terminated ones only for ``visible_s`` seconds after they ended."""
    cutoff = utcnow() - dt.timedelta(seconds=visible_s)
    query = select(*INSTANCE_COLUMNS).where(
        Instance.farm_id == farm_id, or_(Instance.state != "terminated", Instance.terminated_at >= cutoff))
    if instance_ids is not None:
        query = query.where(Instance.id.in_(list(instance_ids)))
    return list(session.execute(query))


def require_instances(session: Session, farm_id: int, visible_s: float, instance_ids: Sequence[str]) -> list[Any]:
    """Every id's row, in the order given; NotFound names the ids the farm does not have."""
    wanted = check_ids("instance", instance_ids)
    rows = {row.id: row for row in visible_instances(session, farm_id, visible_s, wanted)}
    absent = [i for i in wanted if i not in rows]
    if absent:
        raise not_found("instance", absent)
    return [rows[i] for i in wanted]


def placement_group_names(session: Session, farm_id: int) -> dict[str, str]:
    """``{placement group id: name}`` for the farm's groups."""
    rows = session.execute(select(PlacementGroup.id, PlacementGroup.name).where(PlacementGroup.farm_id == farm_id))
    return {group_id: name for group_id, name in rows}


def tags_of(session: Session, farm_id: int, resource_type: str | None = None,
            resource_ids: Collection[str] | None = None) -> dict[str, dict[str, str]]:
    """``{resource id: {key: value}}`` for the farm's tags."""
    query = select(Tag.resource_id, Tag.key, Tag.value).where(Tag.farm_id == farm_id)
    if resource_type is not None:
        query = query.where(Tag.resource_type == resource_type)
    if resource_ids is not None:
        query = query.where(Tag.resource_id.in_(list(resource_ids)))
    tags: dict[str, dict[str, str]] = {}
    for resource_id, key, value in session.execute(query):
        tags.setdefault(resource_id, {})[key] = value
    return tags


def public_ips(session: Session, farm_id: int) -> dict[str, str]:
    """``{instance id: elastic IP}`` for the farm's associated addresses."""
    query = select(Address.instance_id, Address.public_ip).where(
        Address.farm_id == farm_id, Address.role == "elastic", Address.instance_id.is_not(None))
    return {str(instance_id): ip for instance_id, ip in session.execute(query)}


def boot_images(session: Session, image_ids: Collection[str]) -> dict[str, tuple[str | None, str | None]]:
    """``{image id: (kernel id, ramdisk id)}``."""
    if not image_ids:
        return {}
    query = select(Image.id, Image.kernel_id, Image.ramdisk_id).where(Image.id.in_(list(image_ids)))
    return {image_id: (kernel, ramdisk) for image_id, kernel, ramdisk in session.execute(query)}


def attachments(session: Session, farm_id: int) -> dict[str, list[Any]]:
    """``{instance id: [volume rows attached to it]}`` of the farm, by device."""
    found: dict[str, list[Any]] = {}
    for row in session.execute(select(Volume.id, Volume.instance_id, Volume.device, Volume.attach_state,
                                      Volume.attach_time, Volume.delete_on_termination)
                               .where(Volume.farm_id == farm_id, Volume.instance_id.is_not(None))
                               .order_by(Volume.device)):
        found.setdefault(str(row.instance_id), []).append(row)
    return found
