"""Regions, availability zones, account attributes, images and instance types as EC2 trees."""
from __future__ import annotations

from typing import Any

from ivfarm.ec2.views.common import tag_set

SITE_OWNER_ID = "000000000000"
SITE_OWNER_ALIAS = "amazon"  # the provider's images, as Owners=amazon means on AWS
_IMAGE_TYPES = {"machine": "machine", "kernel": "kernel", "ramdisk": "ramdisk"}


def region_item(name: str, endpoint: str) -> dict[str, Any]:
    """One ``regionInfo`` item."""
    return {"regionName": name, "regionEndpoint": endpoint, "optInStatus": "opt-in-not-required"}


def zone_item(name: str, region: str, zone_id: str, available: bool) -> dict[str, Any]:
    """One ``availabilityZoneInfo`` item."""
    return {
        "zoneName": name, "zoneState": "available" if available else "unavailable", "regionName": region,
        "messageSet": [], "zoneId": zone_id, "zoneType": "availability-zone",
        "optInStatus": "opt-in-not-required", "groupName": region, "networkBorderGroup": region,
    }


def attribute_item(name: str, values: list[str]) -> dict[str, Any]:
    """One ``accountAttributeSet`` item."""
    return {"attributeName": name, "attributeValueSet": [{"attributeValue": v} for v in values]}


def image_item(image: Any, owner_id: str | None, tags: dict[str, str] | None) -> dict[str, Any]:
    """One ``imagesSet`` item; ``owner_id`` None for the site's own images."""
    machine = image.kind == "machine"
    return {
        "imageId": image.id,
        "imageLocation": f"{owner_id or SITE_OWNER_ALIAS}/{image.name}",
        "imageState": image.state,
        "stateReason": {"code": "Server.InternalError", "message": image.state_reason} if image.state == "failed"
        else None,
        "imageOwnerId": owner_id or SITE_OWNER_ID,
        "creationDate": image.created_at,
        "isPublic": bool(image.public),
        "architecture": "x86_64",
        "imageType": _IMAGE_TYPES.get(image.kind, image.kind),
        "kernelId": image.kernel_id,
        "ramdiskId": image.ramdisk_id,
        "imageOwnerAlias": None if owner_id else SITE_OWNER_ALIAS,
        "name": image.name,
        "description": image.description or None,
        "rootDeviceType": "ebs" if machine else None,
        "rootDeviceName": "/dev/vda" if machine else None,
        "blockDeviceMapping": block_device_mapping(image),
        "virtualizationType": "hvm",
        "tagSet": tag_set(tags),
        "hypervisor": "kvm",
    }


def block_device_mapping(image: Any) -> list[dict[str, Any]]:
    """The image's ``blockDeviceMapping`` items (farm images record their root disk)."""
    return [{"deviceName": d["device"], "ebs": {"volumeSize": d["size_gb"], "deleteOnTermination": True,
                                                "volumeType": "standard", "encrypted": False}}
            for d in image.block_devices or ()]


def instance_type_item(flavor: Any) -> dict[str, Any]:
    """One ``instanceTypeSet`` item for a flavor."""
    storage = None
    if flavor.ephemeral_gb:
        storage = {"totalSizeInGB": flavor.ephemeral_gb,
                   "disks": [{"sizeInGB": flavor.ephemeral_gb, "count": 1, "type": "hdd"}]}
    return {
        "instanceType": flavor.name,
        "currentGeneration": True,
        "freeTierEligible": False,
        "supportedUsageClasses": ["on-demand"],
        "supportedRootDeviceTypes": ["ebs"],
        "supportedVirtualizationTypes": ["hvm"],
        "bareMetal": False,
        "hypervisor": "kvm",
        "processorInfo": {"supportedArchitectures": ["x86_64"]},
        "vCpuInfo": {"defaultVCpus": flavor.vcpus, "defaultCores": flavor.vcpus, "defaultThreadsPerCore": 1},
        "memoryInfo": {"sizeInMiB": flavor.memory_mb},
        "instanceStorageSupported": bool(flavor.ephemeral_gb),
        "instanceStorageInfo": storage,
        "hibernationSupported": False,
        "burstablePerformanceSupported": False,
        "dedicatedHostsSupported": False,
        "autoRecoverySupported": False,
        "supportedBootModes": ["legacy-bios"],
    }
