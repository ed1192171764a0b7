"""Volumes on real VMs through the EC2 API: hot-plugged into a running guest, data kept across detach
and re-attach to another VM of the farm, grown under a running guest, and a snapshot (taken while
attached) restored into a new volume."""
from __future__ import annotations

import re
import time
from typing import Any

import pytest

from ivfarm.services.farms import lifecycle
from tests.integration.conftest import wait_for_console
from tests.integration.ec2_server import ec2_server, farm_client
from tests.integration.guest import guest_exec
from tests.support.polling import poll_until

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

FAST = {"Delay": 1, "MaxAttempts": 120}
ZONE = "ivfarm-1-worker"
MARK = "IVFARM-VOLUME-DATA-42"


def _disks(instance_id: str) -> set[str]:
    """The whole disks the guest sees (vda, vdb, ...), from /proc/partitions."""
    rc, out = guest_exec(instance_id, "cat /proc/partitions")
    assert rc == 0, out
    return set(re.findall(r"\b(vd[a-z])\s*$", out, re.M))


def _attached(client: Any, volume_id: str) -> bool:
    attachments = client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"]
    return bool(attachments) and attachments[0]["State"] == "attached"


def _attach(client: Any, volume_id: str, instance_id: str, before: set[str]) -> str:
    """Attach and wait until the guest shows one new disk; returns its name."""
    client.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    client.get_waiter("volume_in_use").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    poll_until(lambda: _attached(client, volume_id), 60, 0.5, f"{volume_id} did not become attached")
    (new,) = poll_until(lambda: (_disks(instance_id) - before) or None, 60, 1, f"no new disk in {instance_id}")
    return str(new)


def _read_mark(instance_id: str, disk: str) -> str:
    rc, out = guest_exec(instance_id, f"head -c {len(MARK)} /dev/{disk}; echo")
    assert rc == 0, out
    return out.strip().splitlines()[-1] if out.strip() else ""


def test_volume_hot_plug_data_and_snapshot(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory()
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="volvm"))
    with ec2_server(cloud) as (endpoint, _):
        client = farm_client(endpoint, farm)
        ami = next(i["ImageId"] for i in client.describe_images()["Images"] if i["Name"] == "guest")
        first, second = (i["InstanceId"] for i in client.run_instances(
            ImageId=ami, InstanceType="m1.tiny", MinCount=2, MaxCount=2)["Instances"])
        client.get_waiter("instance_running").wait(InstanceIds=[first, second], WaiterConfig=FAST)
        for instance_id in (first, second):  # booted (its disk drivers loaded), not only started
            wait_for_console(cloud, instance_id, "IVFARM-GUEST: ready", 120)
        before_first, before_second = _disks(first), _disks(second)
        assert before_first == before_second == {"vda"}

        volume = client.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
        client.get_waiter("volume_available").wait(VolumeIds=[volume], WaiterConfig=FAST)
        started = time.monotonic()
        disk = _attach(client, volume, first, before_first)  # hot-plugged into the running guest
        assert time.monotonic() - started < 60
        rc, out = guest_exec(first, f"printf '{MARK}' > /dev/{disk} && sync && echo written")
        assert rc == 0 and "written" in out, out
        assert _read_mark(first, disk) == MARK

        snapshot = client.create_snapshot(VolumeId=volume, Description="while attached")["SnapshotId"]
        client.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot], WaiterConfig=FAST)

        client.detach_volume(VolumeId=volume, InstanceId=first)
        client.get_waiter("volume_available").wait(VolumeIds=[volume], WaiterConfig=FAST)
        assert _disks(first) == before_first  # unplugged from the guest

        disk = _attach(client, volume, second, before_second)
        assert _read_mark(second, disk) == MARK  # the data followed the volume
        client.modify_volume(VolumeId=volume, Size=2)  # grown under the running guest
        poll_until(lambda: guest_exec(second, f"cat /sys/block/{disk}/size")[1].strip().endswith(str(2 * 2**21)),
                   60, 1, "the guest did not see the volume grow to 2 GiB")

        restored = client.create_volume(AvailabilityZone=ZONE, SnapshotId=snapshot)["VolumeId"]
        client.get_waiter("volume_available").wait(VolumeIds=[restored], WaiterConfig=FAST)
        disk = _attach(client, restored, first, before_first)
        assert _read_mark(first, disk) == MARK  # the snapshot restored it

        client.terminate_instances(InstanceIds=[first, second])
        client.get_waiter("instance_terminated").wait(InstanceIds=[first, second], WaiterConfig=FAST)
        client.get_waiter("volume_available").wait(VolumeIds=[volume, restored], WaiterConfig=FAST)
        for volume_id in (volume, restored):
            client.delete_volume(VolumeId=volume_id)
        client.get_waiter("volume_deleted").wait(VolumeIds=[volume, restored], WaiterConfig=FAST)
        client.delete_snapshot(SnapshotId=snapshot)
        poll_until(lambda: client.describe_snapshots()["Snapshots"] == [], 30, 0.5, "the snapshot stayed")
