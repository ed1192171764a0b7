"""Volumes, their attachments and status, and snapshots as EC2 trees."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ivfarm.ec2.views.common import tag_set

# ivfarm's volume states EC2 clients see (a failed create shows as error, as on EC2)
_VOLUME_STATES = {"creating": "creating", "available": "available", "in-use": "in-use", "deleting": "deleting",
                  "deleted": "deleted", "error": "error"}


def attachment_item(row: Any) -> dict[str, Any]:
    """One ``attachmentSet`` item (also the answer of AttachVolume and DetachVolume)."""
    return {"volumeId": row.id, "instanceId": row.instance_id, "device": row.device,
            "status": row.attach_state, "attachTime": row.attach_time,
            "deleteOnTermination": bool(row.delete_on_termination)}


def volume_item(row: Any, zone: str, tags: Mapping[str, str] | None) -> dict[str, Any]:
    """One ``volumeSet`` item (also CreateVolume's answer)."""
    return {
        "volumeId": row.id,
        "size": row.size_gb,
        "snapshotId": row.snapshot_id or "",
        "availabilityZone": zone,
        "status": _VOLUME_STATES.get(row.state, row.state),
        "createTime": row.created_at,
        "attachmentSet": [attachment_item(row)] if row.instance_id and row.attach_state else [],
        "tagSet": tag_set(tags),
        "volumeType": row.volume_type,
        "iops": 3000 if row.volume_type == "gp3" else None,
        "throughput": 125 if row.volume_type == "gp3" else None,
        "encrypted": False,
        "multiAttachEnabled": False,
    }


def health(row: Any) -> str:
    """``volumeStatus.status``: ok when its disk can be used, impaired after a failure."""
    return {"error": "impaired", "creating": "insufficient-data"}.get(row.state, "ok")


def volume_status_item(row: Any, zone: str) -> dict[str, Any]:
    """One ``volumeStatusSet`` item."""
    status = health(row)
    return {
        "volumeId": row.id,
        "availabilityZone": zone,
        "volumeStatus": {"status": status, "details": [
            {"name": "io-enabled", "status": "passed" if status == "ok" else "failed"},
            {"name": "io-performance", "status": "not-applicable"}]},
        "eventsSet": [],
        "actionsSet": [],
    }


def modification_item(row: Any, before_gb: int, before_type: str) -> dict[str, Any]:
    """ModifyVolume's ``volumeModification``."""
    return {"volumeId": row.id, "modificationState": "optimizing" if row.size_gb != before_gb else "completed",
            "targetSize": row.size_gb, "targetVolumeType": row.volume_type, "originalSize": before_gb,
            "originalVolumeType": before_type, "progress": 0 if row.size_gb != before_gb else 100,
            "startTime": row.created_at}


def snapshot_item(row: Any, owner_id: str, tags: Mapping[str, str] | None) -> dict[str, Any]:
    """One ``snapshotSet`` item (also CreateSnapshot's answer)."""
    return {
        "snapshotId": row.id,
        "volumeId": row.volume_id,
        "status": row.state,
        "startTime": row.created_at,
        "progress": f"{row.progress}%",
        "ownerId": owner_id,
        "volumeSize": row.size_gb,
        "description": row.description,
        "encrypted": False,
        "storageTier": "standard",
        "tagSet": tag_set(tags),
    }
