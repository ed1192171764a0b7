"""A farm's security groups: groups, their ingress and egress rules, which instances belong to them.

Every farm has a ``default`` group (inbound from its own members, all outbound); a new group
allows all outbound traffic and no inbound. Changes take the farm's row lock, so duplicate checks
and limits hold under concurrent requests. Enforcement on the VMs' ports is the network room's.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import AlreadyExists, InUse, InvalidInput, IvfarmError, NotFound
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy.tags import add_tags, drop_resource_tags
from ivfarm.store.models import Instance, InstanceGroup, SecurityGroup, SecurityGroupRule
from ivfarm.store.states import InstanceState as S

DEFAULT = "default"
PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp",
             "-1": "-1", "all": "-1"}
ANY = "0.0.0.0/0"


class DuplicatePermission(AlreadyExists):
    """A rule the group already has (or one given twice)."""


class PermissionNotFound(IvfarmError):
    """A rule to revoke that the group does not have."""


class DefaultGroup(InvalidInput):
    """The default group cannot be deleted."""


class GroupLimit(IvfarmError):
    """A limit on groups per farm, rules per group or groups per instance."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the limit of {limit} {what} is reached")
        self.what = what
        self.limit = limit


@dataclass(frozen=True)
class GroupRef:
    """A group named by id or by name."""

    group_id: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        return self.group_id or self.name or ""


@dataclass(frozen=True)
class Permission:
    """One rule as asked for: protocol, ports (ICMP type and code) and one peer (a CIDR or a group)."""

    protocol: str
    from_port: int
    to_port: int
    cidr: str | None = None
    source: GroupRef | None = None
    description: str = ""


def limits(cloud: CloudContext) -> Mapping[str, int]:
    """``per_farm``, ``rules_per_group``, ``per_instance``."""
    return {k: int(v) for k, v in cloud.config.get("ec2.security_groups").items()}


def normalise(protocol: str, from_port: int | None, to_port: int | None) -> tuple[str, int, int]:
    """(protocol, from, to) as stored: ports -1 for ``-1``; ICMP type and code -1 for any."""
    name = PROTOCOLS.get(protocol.lower())
    if name is None:
        raise InvalidInput(f"Invalid value '{protocol[:16]}' for IP protocol: expected tcp, udp, icmp or -1")
    if name == "-1":
        return name, -1, -1
    if name == "icmp":
        low, high = -1 if from_port is None else from_port, -1 if to_port is None else to_port
        if not (-1 <= low <= 255 and -1 <= high <= 255):
            raise InvalidInput("ICMP type and code are -1 (any) or 0 to 255")
        return name, low, high
    if from_port is None or to_port is None:
        raise InvalidInput("Invalid value: must specify both from and to ports with TCP/UDP")
    if not (0 <= from_port <= 65535 and 0 <= to_port <= 65535) or from_port > to_port:
        raise InvalidInput(f"Invalid port range {from_port}-{to_port}: ports are 0 to 65535, from <= to")
    return name, from_port, to_port


def normalise_cidr(cidr: str) -> str:
    """An IPv4 CIDR in canonical form."""
    try:
        return str(ipaddress.IPv4Network(cidr.strip(), strict=False))
    except ValueError as exc:
        raise InvalidInput(f"CIDR block {cidr[:64]} is malformed") from exc


def add_default_group(session: Session, farm_id: int) -> SecurityGroup:
    """The farm's ``default`` group with AWS's rules (call once, when the farm is made)."""
    group = SecurityGroup(id=ids.new_id("security_group"), farm_id=farm_id, name=DEFAULT,
                          description="default group")
    session.add(group)
    session.flush()
    session.add(_rule(group.id, False, "-1", -1, -1, None, group.id))
    session.add(_rule(group.id, True, "-1", -1, -1, ANY, None))
    return group


def _rule(group_id: str, egress: bool, protocol: str, low: int, high: int, cidr: str | None,
          source: str | None, description: str = "") -> SecurityGroupRule:
    return SecurityGroupRule(id=ids.new_id("security_group_rule"), group_id=group_id, egress=egress,
                             protocol=protocol, from_port=low, to_port=high, cidr=cidr, source_group_id=source,
                             description=description)


def find_group(session: Session, farm_id: int, ref: GroupRef) -> SecurityGroup:
    """One of the farm's groups by id or name, or NotFound."""
    query = select(SecurityGroup).where(SecurityGroup.farm_id == farm_id)
    if ref.group_id is not None:
        query = query.where(SecurityGroup.id == ref.group_id)
    else:
        query = query.where(SecurityGroup.name == ref.name)
    group = session.scalar(query)
    if group is None:
        raise NotFound("security_group", str(ref))
    return group


def create_group(cloud: CloudContext, farm_id: int, name: str, description: str,
                 tags: Mapping[str, str] | None = None) -> SecurityGroup:
    """A new group allowing all outbound traffic; AlreadyExists for a name the farm uses."""
    with cloud.store.write() as session:
        cloud.store.lock_farm(session, farm_id)
        if session.scalar(select(SecurityGroup.id).where(SecurityGroup.farm_id == farm_id,
                                                         SecurityGroup.name == name)):
            raise AlreadyExists(f"The security group '{name}' already exists")
        count = session.scalar(select(func.count()).select_from(SecurityGroup).where(
            SecurityGroup.farm_id == farm_id)) or 0
        limit = limits(cloud)["per_farm"]
        if count >= limit:
            raise GroupLimit("security groups per farm", limit)
        group = SecurityGroup(id=ids.new_id("security_group"), farm_id=farm_id, name=name, description=description)
        session.add(group)
        session.flush()
        session.add(_rule(group.id, True, "-1", -1, -1, ANY, None))
        add_tags(session, farm_id, {group.id: "security-group"}, tags or {})
        session.flush()
        session.expunge(group)
    return group


def delete_group(cloud: CloudContext, farm_id: int, ref: GroupRef) -> str:
    """Delete a group that no live instance uses and no other group's rule names; returns its id."""
    with cloud.store.write() as session:
        cloud.store.lock_farm(session, farm_id)
        group = find_group(session, farm_id, ref)
        if group.name == DEFAULT:
            raise DefaultGroup("the default security group cannot be deleted")
        user = session.scalar(select(Instance.id).join(InstanceGroup, InstanceGroup.instance_id == Instance.id)
                              .where(InstanceGroup.group_id == group.id, Instance.state != S.TERMINATED).limit(1))
        if user:
            raise InUse(f"resource {group.id} has a dependent object (instance {user})")
        referrer = session.scalar(select(SecurityGroupRule.group_id).where(
            SecurityGroupRule.source_group_id == group.id, SecurityGroupRule.group_id != group.id).limit(1))
        if referrer:
            raise InUse(f"resource {group.id} has a dependent object (a rule of {referrer})")
        session.execute(delete(InstanceGroup).where(InstanceGroup.group_id == group.id))
        session.execute(delete(SecurityGroupRule).where(SecurityGroupRule.group_id == group.id))
        drop_resource_tags(session, farm_id, [group.id])
        session.delete(group)
        return group.id


def _resolve_permissions(session: Session, farm_id: int, group: SecurityGroup, egress: bool,
                         permissions: Sequence[Permission]) -> list[SecurityGroupRule]:
    rules = []
    for perm in permissions:
        source = None
        if perm.source is not None:
            source = group.id if perm.source in (GroupRef(group.id), GroupRef(None, group.name)) \
                else find_group(session, farm_id, perm.source).id
        cidr = normalise_cidr(perm.cidr) if perm.cidr is not None else None
        rules.append(_rule(group.id, egress, perm.protocol, perm.from_port, perm.to_port, cidr, source,
                           perm.description))
    return rules


def _key(rule: SecurityGroupRule) -> tuple[object, ...]:
    return (rule.egress, rule.protocol, rule.from_port, rule.to_port, rule.cidr, rule.source_group_id)


def _rules_of(session: Session, group_id: str, egress: bool) -> list[SecurityGroupRule]:
    return list(session.scalars(select(SecurityGroupRule).where(
        SecurityGroupRule.group_id == group_id, SecurityGroupRule.egress.is_(egress))))


def authorize(cloud: CloudContext, farm_id: int, ref: GroupRef, egress: bool,
              permissions: Sequence[Permission]) -> list[SecurityGroupRule]:
    """Add rules, all or none: DuplicatePermission for one the group has, GroupLimit past the limit."""
    with cloud.store.write() as session:
        cloud.store.lock_farm(session, farm_id)
        group = find_group(session, farm_id, ref)
        wanted = _resolve_permissions(session, farm_id, group, egress, permissions)
        existing = {_key(r) for r in _rules_of(session, group.id, egress)}
        seen: set[tuple[object, ...]] = set()
        for rule in wanted:
            if _key(rule) in existing or _key(rule) in seen:
                raise DuplicatePermission(_describe(rule, group.id))
            seen.add(_key(rule))
        limit = limits(cloud)["rules_per_group"]
        if len(existing) + len(wanted) > limit:
            raise GroupLimit("rules per security group and direction", limit)
        session.add_all(wanted)
        session.flush()
        for rule in wanted:
            session.expunge(rule)
    return wanted


def revoke(cloud: CloudContext, farm_id: int, ref: GroupRef, egress: bool, permissions: Sequence[Permission],
           rule_ids: Collection[str] = ()) -> list[str]:
    """Remove rules, all or none (PermissionNotFound for one the group lacks); returns their ids."""
    with cloud.store.write() as session:
        cloud.store.lock_farm(session, farm_id)
        group = find_group(session, farm_id, ref)
        wanted = _resolve_permissions(session, farm_id, group, egress, permissions)
        existing = {_key(r): r for r in _rules_of(session, group.id, egress)}
        by_id = {r.id: r for r in existing.values()}
        chosen = []
        for rule in wanted:
            if _key(rule) not in existing:
                raise PermissionNotFound(f"The specified rule does not exist in this security group: "
                                         f"{_describe(rule, group.id)}")
            chosen.append(existing[_key(rule)])
        for rule_id in rule_ids:
            if rule_id not in by_id:
                raise NotFound("security_group_rule", rule_id)
            chosen.append(by_id[rule_id])
        gone = list(dict.fromkeys(r.id for r in chosen))
        if gone:
            session.execute(delete(SecurityGroupRule).where(SecurityGroupRule.id.in_(gone)))
        return gone


def _describe(rule: SecurityGroupRule, group_id: str) -> str:
    peer = rule.cidr or f"group {rule.source_group_id}"
    ports = "" if rule.protocol == "-1" else f" {rule.from_port}-{rule.to_port}"
    return f"{rule.protocol}{ports} {'to' if rule.egress else 'from'} {peer} in {group_id}"


def list_groups(session: Session, farm_id: int) -> list[SecurityGroup]:
    """The farm's groups by name."""
    return list(session.scalars(select(SecurityGroup).where(SecurityGroup.farm_id == farm_id)
                                .order_by(SecurityGroup.name, SecurityGroup.id)))


def list_rules(session: Session, farm_id: int) -> list[SecurityGroupRule]:
    """Every rule of the farm's groups."""
    return list(session.scalars(select(SecurityGroupRule).join(
        SecurityGroup, SecurityGroup.id == SecurityGroupRule.group_id).where(SecurityGroup.farm_id == farm_id)
        .order_by(SecurityGroupRule.group_id, SecurityGroupRule.id)))


def memberships(session: Session, farm_id: int,
                instance_ids: Collection[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    """``{instance id: [(group id, group name), ...]}`` in the order the groups were given."""
    query = (select(InstanceGroup.instance_id, SecurityGroup.id, SecurityGroup.name)
             .join(SecurityGroup, SecurityGroup.id == InstanceGroup.group_id)
             .where(SecurityGroup.farm_id == farm_id).order_by(InstanceGroup.position))
    if instance_ids is not None:
        query = query.where(InstanceGroup.instance_id.in_(list(instance_ids)))
    found: dict[str, list[tuple[str, str]]] = {}
    for instance_id, group_id, name in session.execute(query):
        found.setdefault(instance_id, []).append((group_id, name))
    return found


def resolve_groups(cloud: CloudContext, session: Session, farm_id: int, group_ids: Sequence[str],
                   names: Sequence[str]) -> list[str]:
    """The ids of the groups named (by id or name), the default group when none is; NotFound otherwise."""
    refs = [GroupRef(group_id=g) for g in group_ids] + [GroupRef(name=n) for n in names] or [GroupRef(name=DEFAULT)]
    resolved = list(dict.fromkeys(find_group(session, farm_id, ref).id for ref in refs))
    limit = limits(cloud)["per_instance"]
    if len(resolved) > limit:
        raise GroupLimit("security groups per instance", limit)
    return resolved


def join_groups(session: Session, instance_ids: Sequence[str], group_ids: Sequence[str]) -> None:
    """Make new instances (already flushed) members of the groups, in one INSERT."""
    rows = [{"instance_id": i, "group_id": g, "position": n} for i in instance_ids for n, g in enumerate(group_ids)]
    if rows:
        session.execute(insert(InstanceGroup), rows)


def replace_groups(cloud: CloudContext, farm_id: int, instance_id: str, group_ids: Sequence[str]) -> list[str]:
    """Set the groups of one of the farm's instances that is not terminated; returns the group ids."""
    with cloud.store.write() as session:
        cloud.store.lock_farm(session, farm_id)
        instance = session.get(Instance, instance_id)
        if instance is None or instance.farm_id != farm_id:
            raise NotFound("instance", instance_id)
        if instance.state in (S.TERMINATED, S.SHUTTING_DOWN):
            raise InvalidInput(f"instance {instance_id} is {instance.state}: its groups cannot change")
        resolved = resolve_groups(cloud, session, farm_id, group_ids, [])
        session.execute(delete(InstanceGroup).where(InstanceGroup.instance_id == instance_id))
        join_groups(session, [instance_id], resolved)
        return resolved


def drop_farm_groups(session: Session, farm_id: int) -> None:
    """Remove every group, rule and membership of a farm being deleted."""
    group_ids = select(SecurityGroup.id).where(SecurityGroup.farm_id == farm_id)
    session.execute(delete(InstanceGroup).where(InstanceGroup.group_id.in_(group_ids)))
    session.execute(delete(SecurityGroupRule).where(or_(SecurityGroupRule.group_id.in_(group_ids),
                                                        SecurityGroupRule.source_group_id.in_(group_ids))))
    session.execute(delete(SecurityGroup).where(SecurityGroup.farm_id == farm_id))

