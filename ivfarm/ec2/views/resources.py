"""Key pairs, placement groups, elastic IPs and tags as EC2 trees."""
from __future__ import annotations

from typing import Any

from ivfarm.ec2.views.common import tag_set


def key_pair_item(pair: Any, key_type: str, tags: dict[str, str] | None,
                  include_public_key: bool = False) -> dict[str, Any]:
    """One ``keySet`` item."""
    return {
        "keyPairId": pair.id,
        "keyName": pair.name,
        "keyFingerprint": pair.fingerprint,
        "keyType": key_type,
        "tagSet": tag_set(tags),
        "publicKey": pair.public_key if include_public_key else None,
        "createTime": pair.created_at,
    }


def placement_group_item(group: Any, tags: dict[str, str] | None, arn: str) -> dict[str, Any]:
    """One ``placementGroupSet`` item (spread over hosts; always ``available`` once made)."""
    return {
        "groupName": group.name,
        "groupId": group.id,
        "strategy": group.strategy,
        "state": "available",
        "spreadLevel": "host",
        "groupArn": arn,
        "tagSet": tag_set(tags),
    }


def address_item(address: Any, private_ip: str | None, tags: dict[str, str] | None) -> dict[str, Any]:
    """One ``addressesSet`` item."""
    return {
        "publicIp": address.public_ip,
        "allocationId": address.allocation_id,
        "domain": "vpc",
        "instanceId": address.instance_id,
        "associationId": address.association_id,
        "privateIpAddress": private_ip,
        "tagSet": tag_set(tags),
        "publicIpv4Pool": "ivfarm",
    }


def tag_item(tag: Any) -> dict[str, Any]:
    """One DescribeTags ``tagSet`` item."""
    return {"resourceId": tag.resource_id, "resourceType": tag.resource_type, "key": tag.key, "value": tag.value}
