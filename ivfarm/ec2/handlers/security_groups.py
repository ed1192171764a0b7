"""Create/Delete/DescribeSecurityGroups, DescribeSecurityGroupRules, Authorize/Revoke ingress and egress.

Rules come as ``IpPermissions.N`` (IpRanges, UserIdGroupPairs as ``Groups``) or in the flat
EC2-classic form euca2ools and boto 2 send (``IpProtocol``, ``FromPort``, ``ToPort``, ``CidrIp``,
``SourceSecurityGroupName``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ivfarm.ec2 import pagination
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, echo, invalid_value
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import id_list, tag_specifications
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import check_ids, tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.common import tag_set
from ivfarm.ec2.views.security_groups import group_item, rule_item
from ivfarm.errors import AlreadyExists, InUse, InvalidInput
from ivfarm.services.network import firewall
from ivfarm.services.tenancy import security_groups as sg
from ivfarm.services.tenancy.security_groups import GroupRef, Permission

MAX_NAME = 255
MAX_PERMISSIONS = 100


def _rules_by_direction(rule: Any, egress: bool) -> bool:
    return bool(rule.egress) == egress


def _permission_filter(egress: bool, what: str) -> Callable[[Any], list[str | None]]:
    def extract(c: Any) -> list[str | None]:
        rules = [r for r in c.rules if _rules_by_direction(r, egress)]
        if what == "protocol":
            return [r.protocol for r in rules]
        if what == "from-port":
            return [str(r.from_port) for r in rules]
        if what == "to-port":
            return [str(r.to_port) for r in rules]
        if what == "cidr":
            return [r.cidr for r in rules]
        if what == "group-id":
            return [r.source_group_id for r in rules]
        return [c.names.get(r.source_group_id) for r in rules if r.source_group_id]
    return extract


class _Candidate:
    """A group with its rules and the names of the farm's groups, for filters."""

    def __init__(self, group: Any, rules: list[Any], names: dict[str, str], owner_id: str, vpc_id: str) -> None:
        self.group, self.rules, self.names, self.owner_id, self.vpc_id = group, rules, names, owner_id, vpc_id


GROUP_FILTERS: dict[str, Callable[[Any], Any]] = {
    "group-id": lambda c: (c.group.id,),
    "group-name": lambda c: (c.group.name,),
    "description": lambda c: (c.group.description,),
    "owner-id": lambda c: (c.owner_id,),
    "vpc-id": lambda c: (c.vpc_id,),
}
for _prefix, _egress in (("ip-permission", False), ("egress.ip-permission", True)):
    for _what in ("protocol", "from-port", "to-port", "cidr", "group-id", "group-name"):
        GROUP_FILTERS[f"{_prefix}.{_what}"] = _permission_filter(_egress, _what)
    GROUP_FILTERS[f"{_prefix}.user-id"] = lambda c: (c.owner_id,)
    GROUP_FILTERS[f"{_prefix}.ipv6-cidr"] = lambda c: ()
    GROUP_FILTERS[f"{_prefix}.prefix-list-id"] = lambda c: ()

RULE_FILTERS: dict[str, Callable[[Any], Any]] = {
    "group-id": lambda r: (r.group_id,),
    "security-group-rule-id": lambda r: (r.id,),
}


@contextmanager
def _translated() -> Iterator[None]:
    """The service's errors as AWS's codes."""
    try:
        yield
    except sg.DuplicatePermission as exc:
        raise Ec2Error("InvalidPermission.Duplicate", f"the specified rule \"{echo(exc)}\" already exists") from exc
    except sg.PermissionNotFound as exc:
        raise Ec2Error("InvalidPermission.NotFound", str(exc)) from exc
    except sg.DefaultGroup as exc:
        raise Ec2Error("CannotDelete", "the specified group: \"default\" name: \"default\" cannot be deleted by a user") \
            from exc
    except sg.GroupLimit as exc:
        code = {"security groups per farm": "SecurityGroupLimitExceeded",
                "security groups per instance": "SecurityGroupsPerInstanceLimitExceeded"}.get(
            exc.what, "RulesPerSecurityGroupLimitExceeded")
        raise Ec2Error(code, f"The maximum number of {exc.what} ({exc.limit}) has been reached.") from exc
    except InUse as exc:
        raise Ec2Error("DependencyViolation", str(exc)) from exc
    except AlreadyExists as exc:
        raise Ec2Error("InvalidGroup.Duplicate", str(exc)) from exc
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc


def group_ref(p: Params, id_name: str = "GroupId", name_name: str = "GroupName") -> GroupRef:
    """A group by ``GroupId`` or ``GroupName`` (one of them required)."""
    group_id = p.string(id_name, max_length=64)
    name = p.string(name_name, max_length=MAX_NAME)
    if not group_id and not name:
        raise Ec2Error("MissingParameter", f"The request must contain the parameter {name_name} or {id_name}")
    if group_id:
        check_ids("security_group", [group_id])
        return GroupRef(group_id=group_id)
    return GroupRef(name=name)


def _ports(p: Params) -> tuple[int | None, int | None]:
    return p.integer("FromPort", minimum=-1, maximum=65535), p.integer("ToPort", minimum=-1, maximum=65535)


def _expand(protocol: str | None, from_port: int | None, to_port: int | None, cidrs: list[tuple[str, str]],
            sources: list[tuple[GroupRef, str]]) -> list[Permission]:
    if not protocol:
        raise Ec2Error("MissingParameter", "The request must contain the parameter IpProtocol")
    try:
        name, low, high = sg.normalise(protocol, from_port, to_port)
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc
    if not cidrs and not sources:
        raise Ec2Error("InvalidParameterValue", "a rule needs an IP range (CidrIp) or a source group")
    return ([Permission(name, low, high, cidr=c, description=d) for c, d in cidrs]
            + [Permission(name, low, high, source=g, description=d) for g, d in sources])


def _structured(p: Params) -> list[Permission]:
    found: list[Permission] = []
    structs = p.structs("IpPermissions")
    if len(structs) > MAX_PERMISSIONS:
        raise invalid_value("IpPermissions", f"{len(structs)} items", f"at most {MAX_PERMISSIONS}")
    for perm in structs:
        protocol = perm.string("IpProtocol", max_length=16)
        from_port, to_port = _ports(perm)
        cidrs = [(r.required("CidrIp", max_length=64), r.string("Description", max_length=255) or "")
                 for r in perm.structs("IpRanges")]
        sources = []
        for pair in perm.structs("Groups"):
            pair.string("UserId", max_length=64)
            pair.string("VpcId", max_length=64)
            pair.string("PeeringStatus", max_length=64)
            sources.append((group_ref(pair), pair.string("Description", max_length=255) or ""))
        if perm.structs("Ipv6Ranges") or perm.structs("PrefixListIds"):
            raise Ec2Error("InvalidParameterValue", "IPv6 ranges and prefix lists are not supported here")
        found.extend(_expand(protocol, from_port, to_port, cidrs, sources))
    return found


def _flat(p: Params) -> list[Permission]:
    protocol = p.string("IpProtocol", max_length=16)
    from_port, to_port = _ports(p)
    cidr = p.string("CidrIp", max_length=64)
    source_name = p.string("SourceSecurityGroupName", max_length=MAX_NAME)
    p.string("SourceSecurityGroupOwnerId", max_length=64)
    if protocol is None and cidr is None and source_name is None:
        return []
    if protocol is None and source_name is not None:  # EC2-classic: a whole group means every protocol
        protocol = "-1"
    return _expand(protocol, from_port, to_port, [(cidr, "")] if cidr else [],
                   [(GroupRef(name=source_name), "")] if source_name else [])


def _permissions(p: Params, rule_ids_allowed: bool) -> tuple[list[Permission], list[str]]:
    permissions = _structured(p) + _flat(p)
    rule_ids = check_ids("security_group_rule", id_list(p, "SecurityGroupRuleId")) if rule_ids_allowed else []
    if not permissions and not rule_ids:
        raise Ec2Error("MissingParameter", "The request must contain the parameter IpPermissions")
    return permissions, rule_ids


@action("CreateSecurityGroup")
def create_security_group(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """A new group in the farm's VPC, allowing all outbound traffic."""
    name = p.required("GroupName", max_length=MAX_NAME)
    description = p.required("GroupDescription", max_length=MAX_NAME)
    vpc = p.string("VpcId", max_length=64)
    tags = tag_specifications(p, "security-group")
    p.done()
    if name.lower().startswith("sg-"):
        raise invalid_value("GroupName", name, "group names may not start with sg-")
    if not all(" " <= c <= "~" for c in name + description):
        raise Ec2Error("InvalidParameterValue", "group names and descriptions are printable ASCII")
    if vpc is not None and vpc != ctx.vpc_id:
        raise Ec2Error("InvalidVpcID.NotFound", f"The vpc ID '{echo(vpc)}' does not exist")
    ctx.proceed()
    with _translated():
        group = sg.create_group(ctx.cloud, ctx.farm_id, name, description, tags)
    return {"groupId": group.id, "tagSet": tag_set(tags)}


@action("DeleteSecurityGroup")
def delete_security_group(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Delete a group no instance and no other group's rule uses."""
    ref = group_ref(p)
    p.done()
    ctx.proceed()
    with _translated():
        group_id = sg.delete_group(ctx.cloud, ctx.farm_id, ref)
    return {"return": True, "groupId": group_id}


def _key(c: _Candidate) -> tuple[str, ...]:
    return (c.group.name, c.group.id)


@action("DescribeSecurityGroups")
def describe_security_groups(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's groups by id, name or filters."""
    group_ids = check_ids("security_group", id_list(p, "GroupId"))
    names = p.strings("GroupName", max_length=MAX_NAME)
    page = pagination.read_page(p, 5, 1000, exclusive=("GroupId", "GroupName"))
    filters = parse_filters(p, GROUP_FILTERS)
    p.done()
    with ctx.cloud.store.read() as session:
        groups = sg.list_groups(session, ctx.farm_id)
        rules = sg.list_rules(session, ctx.farm_id)
        tags = tags_of(session, ctx.farm_id, "security-group")
    by_id = {g.id: g for g in groups}
    by_name = {g.name: g for g in groups}
    absent = [i for i in group_ids if i not in by_id] + [n for n in names if n not in by_name]
    if absent:
        raise Ec2Error("InvalidGroup.NotFound", f"The security group '{echo(', '.join(absent))}' does not exist")
    ctx.proceed()
    names_of = {g.id: g.name for g in groups}
    rules_of: dict[str, list[Any]] = {}
    for rule in rules:
        rules_of.setdefault(rule.group_id, []).append(rule)
    candidates = [_Candidate(g, rules_of.get(g.id, []), names_of, ctx.owner_id, ctx.vpc_id) for g in groups
                  if (not group_ids or g.id in group_ids) and (not names or g.name in names)]
    candidates = [c for c in candidates if filters.match(c, tags.get(c.group.id))]
    chosen, token = pagination.paginate(candidates, _key, page)
    return {"securityGroupInfo": [group_item(c.group, c.rules, ctx.owner_id, ctx.vpc_id, names_of,
                                             tags.get(c.group.id)) for c in chosen], "nextToken": token}


@action("DescribeSecurityGroupRules")
def describe_security_group_rules(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The rules of the farm's groups, by rule id or filters (group-id, security-group-rule-id)."""
    rule_ids = check_ids("security_group_rule", id_list(p, "SecurityGroupRuleId"))
    page = pagination.read_page(p, 5, 1000, exclusive=("SecurityGroupRuleId",))
    filters = parse_filters(p, RULE_FILTERS, tags=False)
    p.done()
    with ctx.cloud.store.read() as session:
        rules = sg.list_rules(session, ctx.farm_id)
    known = {r.id for r in rules}
    absent = [i for i in rule_ids if i not in known]
    if absent:
        raise Ec2Error("InvalidSecurityGroupRuleId.NotFound",
                       f"The security group rule '{echo(', '.join(absent))}' does not exist")
    ctx.proceed()
    chosen = [r for r in rules if (not rule_ids or r.id in rule_ids) and filters.match(r)]
    page_rules, token = pagination.paginate(chosen, lambda r: (r.group_id, r.id), page)
    return {"securityGroupRuleSet": [rule_item(r, ctx.owner_id) for r in page_rules], "nextToken": token}


def _change(ctx: RequestContext, p: Params, egress: bool, grant: bool) -> dict[str, Any]:
    ref = group_ref(p)
    permissions, rule_ids = _permissions(p, rule_ids_allowed=not grant)
    if grant:
        tag_specifications(p, "security-group-rule")
    p.done()
    ctx.proceed()
    with _translated():
        if grant:
            rules = sg.authorize(ctx.cloud, ctx.farm_id, ref, egress, permissions)
        else:
            sg.revoke(ctx.cloud, ctx.farm_id, ref, egress, permissions, rule_ids)
    firewall.refresh_farm(ctx.cloud, ctx.farm_id)  # applied live on the VMs' ports
    if not grant:
        return {"return": True}
    return {"return": True, "securityGroupRuleSet": [rule_item(r, ctx.owner_id) for r in rules]}


@action("AuthorizeSecurityGroupIngress")
def authorize_ingress(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Allow inbound traffic from CIDRs or groups."""
    return _change(ctx, p, egress=False, grant=True)


@action("AuthorizeSecurityGroupEgress")
def authorize_egress(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Allow outbound traffic to CIDRs or groups."""
    return _change(ctx, p, egress=True, grant=True)


@action("RevokeSecurityGroupIngress")
def revoke_ingress(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Remove inbound rules (by permission or SecurityGroupRuleId)."""
    return _change(ctx, p, egress=False, grant=False)


@action("RevokeSecurityGroupEgress")
def revoke_egress(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Remove outbound rules (by permission or SecurityGroupRuleId)."""
    return _change(ctx, p, egress=True, grant=False)
