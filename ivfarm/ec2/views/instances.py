"""Instances, reservations, state changes, status and attributes as EC2 trees."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivfarm.ec2.views.common import ec2_state, state_tree, tag_set
from ivfarm.services.compute import metadata_options
from ivfarm.services.compute.metadata_options import MetadataOptions

ROOT_DEVICE = "/dev/vda"


@dataclass
class Related:
    """What an instance view needs beside its row: tags, elastic IPs, kernels and ramdisks, zones."""

    zone_for: Callable[[str], str]
    tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    public_ips: Mapping[str, str] = field(default_factory=dict)
    boot: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    groups: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)  # instance -> (id, name)
    vpc_id: str | None = None  # the farm's VPC and subnet
    subnet_id: str | None = None
    owner_id: str | None = None
    volumes: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # instance -> attached volume rows
    placement_groups: Mapping[str, str] = field(default_factory=dict)  # placement group id -> name


def _block_devices(related: Related, instance_id: str) -> list[dict[str, Any]]:
    """``blockDeviceMapping``: the instance's attached volumes."""
    return [{"deviceName": v.device, "ebs": {"volumeId": v.id, "status": v.attach_state, "attachTime": v.attach_time,
                                            "deleteOnTermination": bool(v.delete_on_termination)}}
            for v in related.volumes.get(instance_id, ())]


def _state_reason(reason: str) -> dict[str, str] | None:
    if not reason:
        return None
    code, sep, _ = reason.partition(":")
    return {"code": code if sep and "." in code else "Client.UserInitiated", "message": reason}


def _group_set(related: Related, instance_id: str) -> list[dict[str, str]]:
    return [{"groupId": g, "groupName": n} for g, n in related.groups.get(instance_id, ())]


def interface_id(instance_id: str) -> str:
    """The id of an instance's network interface."""
    return "eni-" + instance_id.partition("-")[2]


def _interfaces(row: Any, related: Related) -> list[dict[str, Any]]:
    if not row.ip or not row.mac or ec2_state(row.state) == "terminated":
        return []
    public_ip = related.public_ips.get(row.id)
    return [{
        "networkInterfaceId": interface_id(row.id), "subnetId": related.subnet_id, "vpcId": related.vpc_id,
        "description": "", "ownerId": related.owner_id, "status": "in-use", "macAddress": row.mac,
        "privateIpAddress": row.ip, "sourceDestCheck": True, "groupSet": _group_set(related, row.id),
        "attachment": {"attachmentId": "eni-attach-" + row.id.partition("-")[2], "deviceIndex": 0,
                       "status": "attached", "attachTime": row.launched_at or row.created_at,
                       "deleteOnTermination": True},
        "association": {"publicIp": public_ip, "ipOwnerId": related.owner_id} if public_ip else None,
        "privateIpAddressesSet": [{"privateIpAddress": row.ip, "primary": True}],
    }]
def metadata_options_tree(options: MetadataOptions, state: str = "applied") -> dict[str, Any]:
    """``metadataOptions`` of an instance (or of ModifyInstanceMetadataOptions' answer)."""
    return {
        "state": state,
        "httpTokens": options.http_tokens,
        "httpPutResponseHopLimit": options.hop_limit,
        "httpEndpoint": options.http_endpoint,
        "httpProtocolIpv6": "disabled",
        "instanceMetadataTags": "disabled",
    }


def instance_item(row: Any, related: Related) -> dict[str, Any]:
    """One ``instancesSet`` item."""
    kernel, ramdisk = related.boot.get(row.image_id, (None, None))
    state = ec2_state(row.state)
    return {
        "instanceId": row.id,
        "imageId": row.image_id,
        "instanceState": state_tree(row.state),
        "privateDnsName": "",
        "dnsName": "",
        "reason": row.state_reason or "",
        "keyName": row.key_name,
        "amiLaunchIndex": row.launch_index,
        "productCodes": [],
        "instanceType": row.flavor_name,
        "launchTime": row.launched_at or row.created_at,
        "placement": {"availabilityZone": related.zone_for(row.host_class),
                      "groupName": related.placement_groups.get(row.placement_group_id or "", ""),
                      "groupId": row.placement_group_id, "tenancy": "default"},
        "kernelId": kernel,
        "ramdiskId": ramdisk,
        "monitoring": {"state": "disabled"},
        "subnetId": related.subnet_id if state != "terminated" else None,
        "vpcId": related.vpc_id if state != "terminated" else None,
        "privateIpAddress": row.ip if state != "terminated" else None,
        "ipAddress": related.public_ips.get(row.id),
        "groupSet": _group_set(related, row.id),
        "stateReason": _state_reason(row.state_reason) if state in ("stopped", "terminated", "stopping",
                                                                       "shutting-down") else None,
        "architecture": "x86_64",
        "rootDeviceType": "ebs",
        "rootDeviceName": ROOT_DEVICE,
        "blockDeviceMapping": _block_devices(related, row.id),
        "virtualizationType": "hvm",
        "clientToken": row.client_token or "",
        "tagSet": tag_set(related.tags.get(row.id)),
        "hypervisor": "kvm",
        "ebsOptimized": False,
        "cpuOptions": {"coreCount": row.vcpus, "threadsPerCore": 1},
        "networkInterfaceSet": _interfaces(row, related),
        "metadataOptions": metadata_options_tree(metadata_options.of(row)),
    }


def reservations(rows: Sequence[Any], related: Related, owner_id: str) -> list[dict[str, Any]]:
    """``reservationSet`` items: instances grouped by reservation, in the order given."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.reservation_id, []).append(row)
    return [reservation(rid, members, related, owner_id) for rid, members in grouped.items()]


def reservation(reservation_id: str, rows: Sequence[Any], related: Related, owner_id: str) -> dict[str, Any]:
    """One reservation with its instances."""
    return {
        "reservationId": reservation_id,
        "ownerId": owner_id,
        "groupSet": [],
        "instancesSet": [instance_item(row, related) for row in rows],
    }


def state_change(instance_id: str, previous: str, current: str) -> dict[str, Any]:
    """An ``instancesSet`` item of Start/Stop/TerminateInstances."""
    return {"instanceId": instance_id, "currentState": state_tree(current), "previousState": state_tree(previous)}


def status_item(row: Any, zone: str) -> dict[str, Any]:
    """One ``instanceStatusSet`` item: running and provisioned means ok."""
    state = ec2_state(row.state)
    if state == "running":
        health = "ok"
    elif state == "pending":
        health = "initializing"
    else:
        health = "not-applicable"
    details = [{"name": "reachability", "status": "passed" if health == "ok" else "initializing"}]
    check = {"status": health, "details": details if health != "not-applicable" else []}
    return {
        "instanceId": row.id,
        "availabilityZone": zone,
        "eventsSet": [],
        "instanceState": state_tree(row.state),
        "systemStatus": check,
        "instanceStatus": check,
    }
