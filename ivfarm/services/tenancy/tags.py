"""Tags on a farm's own resources: instances, key pairs, elastic IPs (by allocation id), its images.

Limits follow AWS: 50 tags per resource, keys of 1-128 and values of up to 256 characters, no
``aws:`` prefix. A resource of another farm is reported exactly as a missing one.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import InvalidInput, NotFound
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store.models import (
    Address,
    Image,
    Instance,
    KeyPair,
    PlacementGroup,
    SecurityGroup,
    Snapshot,
    Tag,
    Volume,
)

MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
# id kind (ivfarm.ids) -> EC2 resource type
RESOURCE_TYPES = {"instance": "instance", "keypair": "key-pair", "allocation": "elastic-ip", "image": "image",
                  "security_group": "security-group", "volume": "volume", "snapshot": "snapshot",
                  "placement_group": "placement-group"}


class TagLimitExceeded(InvalidInput):
    """A resource would carry more than ``MAX_TAGS`` tags."""


class UnknownResource(InvalidInput):
    """An id of no taggable kind."""

    def __init__(self, ident: str) -> None:
        super().__init__(f"The ID '{ident[:80]}' is not valid")
        self.ident = ident


def kind_of(resource_id: str) -> str:
    """The ``ivfarm.ids`` kind of a taggable id (UnknownResource otherwise)."""
    prefix = resource_id.partition("-")[0]
    for kind in RESOURCE_TYPES:
        if ids.PREFIXES[kind] == prefix:
            return kind
    raise UnknownResource(resource_id)


def validate_tags(tags: Mapping[str, str]) -> None:
    """Check keys and values against AWS's limits."""
    if len(tags) > MAX_TAGS:
        raise TagLimitExceeded(f"at most {MAX_TAGS} tags per resource")
    for key, value in tags.items():
        validate_key(key)
        if len(value) > MAX_VALUE:
            raise InvalidInput(f"tag value for {key[:MAX_KEY]!r} is longer than {MAX_VALUE} characters")


def validate_key(key: str) -> None:
    """A tag key: 1-128 characters, not starting with ``aws:``."""
    if not 1 <= len(key) <= MAX_KEY:
        raise InvalidInput(f"a tag key has 1 to {MAX_KEY} characters")
    if key.lower().startswith("aws:"):
        raise InvalidInput("tag keys starting with 'aws:' are reserved for internal use")


def _existing(session: Session, farm_id: int, kind: str, wanted: list[str],
              terminated_after: dt.datetime | None) -> set[str]:
    query: Select[Any]
    if kind == "instance":
        query = select(Instance.id).where(Instance.farm_id == farm_id, Instance.id.in_(wanted))
        if terminated_after is not None:
            query = query.where(or_(Instance.state != "terminated", Instance.terminated_at >= terminated_after))
    elif kind == "keypair":
        query = select(KeyPair.id).where(KeyPair.farm_id == farm_id, KeyPair.id.in_(wanted))
    elif kind == "placement_group":
        query = select(PlacementGroup.id).where(PlacementGroup.farm_id == farm_id, PlacementGroup.id.in_(wanted))
    elif kind == "security_group":
        query = select(SecurityGroup.id).where(SecurityGroup.farm_id == farm_id, SecurityGroup.id.in_(wanted))
    elif kind == "volume":
        query = select(Volume.id).where(Volume.farm_id == farm_id, Volume.id.in_(wanted), Volume.state != "deleted")
    elif kind == "snapshot":
        query = select(Snapshot.id).where(Snapshot.farm_id == farm_id, Snapshot.id.in_(wanted),
                                          Snapshot.state != "deleted")
    elif kind == "allocation":
        query = select(Address.allocation_id).where(
            Address.farm_id == farm_id, Address.allocated.is_(True), Address.allocation_id.in_(wanted))
    else:
        query = select(Image.id).where(Image.owner_farm_id == farm_id, Image.id.in_(wanted))
    return set(session.scalars(query))


def require_resources(session: Session, farm_id: int, resource_ids: Sequence[str],
                      terminated_after: dt.datetime | None = None) -> dict[str, str]:
    """``{id: resource type}`` for ids the farm owns; NotFound for the first it does not."""
    by_kind: dict[str, list[str]] = {}
    for resource_id in resource_ids:
        kind = kind_of(resource_id)
        if not ids.is_valid(resource_id, kind):
            raise UnknownResource(resource_id)
        by_kind.setdefault(kind, []).append(resource_id)
    found: dict[str, str] = {}
    for kind, wanted in by_kind.items():
        present = _existing(session, farm_id, kind, wanted, terminated_after)
        for resource_id in wanted:
            if resource_id not in present:
                raise NotFound(kind, resource_id)
            found[resource_id] = RESOURCE_TYPES[kind]
    return found


def add_tags(session: Session, farm_id: int, resources: Mapping[str, str], tags: Mapping[str, str]) -> None:
    """Set ``tags`` on resources already checked to be the farm's (``{id: resource type}``)."""
    validate_tags(tags)
    if not tags or not resources:
        return
    current: dict[str, dict[str, Tag]] = {}
    for tag in session.scalars(select(Tag).where(Tag.resource_id.in_(list(resources)))):
        current.setdefault(tag.resource_id, {})[tag.key] = tag
    for resource_id, resource_type in resources.items():
        mine = current.get(resource_id, {})
        if len(set(mine) | set(tags)) > MAX_TAGS:
            raise TagLimitExceeded(f"resource {resource_id} would have more than {MAX_TAGS} tags")
        for key, value in tags.items():
            if key in mine:
                mine[key].value = value
            else:
                session.add(Tag(resource_id=resource_id, key=key, value=value, farm_id=farm_id,
                                resource_type=resource_type))


def create_tags(cloud: CloudContext, farm_id: int, resource_ids: Sequence[str], tags: Mapping[str, str],
                terminated_after: dt.datetime | None = None) -> None:
    """Add or overwrite tags on the farm's resources; all or nothing."""
    validate_tags(tags)
    with cloud.store.write() as session:
        add_tags(session, farm_id, require_resources(session, farm_id, resource_ids, terminated_after), tags)


def delete_tags(cloud: CloudContext, farm_id: int, resource_ids: Sequence[str],
                tags: Sequence[tuple[str, str | None]] | None = None,
                terminated_after: dt.datetime | None = None) -> None:
    """Remove tags: all of them (``tags`` None), a key, or a key only when it has the given value."""
    for key, _ in tags or ():
        validate_key(key)
    with cloud.store.write() as session:
        resources = list(require_resources(session, farm_id, resource_ids, terminated_after))
        scope = (Tag.farm_id == farm_id, Tag.resource_id.in_(resources))
        if tags is None:
            session.execute(delete(Tag).where(*scope))
            return
        for key, value in tags:
            condition = [*scope, Tag.key == key]
            if value is not None:
                condition.append(Tag.value == value)
            session.execute(delete(Tag).where(*condition))


def drop_resource_tags(session: Session, farm_id: int, resource_ids: Collection[str]) -> None:
    """Forget the tags of resources that went away (a deleted key pair, a released address)."""
    if resource_ids:
        session.execute(delete(Tag).where(Tag.farm_id == farm_id, Tag.resource_id.in_(list(resource_ids))))


def list_tags(cloud: CloudContext, farm_id: int, terminated_after: dt.datetime | None = None) -> list[Tag]:
    """The farm's tags, without those of instances no longer visible."""
    with cloud.store.read() as session:
        tags = list(session.scalars(select(Tag).where(Tag.farm_id == farm_id)))
        instance_ids = {t.resource_id for t in tags if t.resource_type == "instance"}
        if not instance_ids:
            return tags
        visible = select(Instance.id).where(Instance.farm_id == farm_id, Instance.id.in_(list(instance_ids)))
        if terminated_after is not None:
            visible = visible.where(or_(Instance.state != "terminated", Instance.terminated_at >= terminated_after))
        shown = set(session.scalars(visible))
    return [t for t in tags if t.resource_type != "instance" or t.resource_id in shown]
