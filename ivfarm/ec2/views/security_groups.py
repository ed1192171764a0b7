"""Security groups and their rules as EC2 trees."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ivfarm.ec2.views.common import tag_set


def _ports(rule: Any) -> dict[str, Any]:
    if rule.protocol == "-1":
        return {"fromPort": None, "toPort": None}
    return {"fromPort": rule.from_port, "toPort": rule.to_port}


def ip_permissions(rules: Sequence[Any], owner_id: str, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """``ipPermissions`` items: the rules of one direction grouped by protocol and ports."""
    grouped: dict[tuple[str, int, int], list[Any]] = {}
    for rule in rules:
        grouped.setdefault((rule.protocol, rule.from_port, rule.to_port), []).append(rule)
    items = []
    for members in grouped.values():
        first = members[0]
        items.append({
            "ipProtocol": first.protocol, **_ports(first),
            "groups": [{"userId": owner_id, "groupId": r.source_group_id, "groupName": names.get(r.source_group_id),
                        "description": r.description or None} for r in members if r.source_group_id],
            "ipRanges": [{"cidrIp": r.cidr, "description": r.description or None} for r in members if r.cidr],
            "ipv6Ranges": [],
            "prefixListIds": [],
        })
    return items


def group_item(group: Any, rules: Sequence[Any], owner_id: str, vpc_id: str, names: Mapping[str, str],
               tags: Mapping[str, str] | None) -> dict[str, Any]:
    """One ``securityGroupInfo`` item."""
    return {
        "ownerId": owner_id,
        "groupId": group.id,
        "groupName": group.name,
        "groupDescription": group.description,
        "ipPermissions": ip_permissions([r for r in rules if not r.egress], owner_id, names),
        "ipPermissionsEgress": ip_permissions([r for r in rules if r.egress], owner_id, names),
        "vpcId": vpc_id,
        "tagSet": tag_set(tags),
    }


def rule_item(rule: Any, owner_id: str) -> dict[str, Any]:
    """One ``securityGroupRuleSet`` item."""
    return {
        "securityGroupRuleId": rule.id,
        "groupId": rule.group_id,
        "groupOwnerId": owner_id,
        "isEgress": rule.egress,
        "ipProtocol": rule.protocol,
        **_ports(rule),
        "cidrIpv4": rule.cidr,
        "referencedGroupInfo": {"groupId": rule.source_group_id, "userId": owner_id} if rule.source_group_id else None,
        "description": rule.description or None,
        "tagSet": [],
    }
