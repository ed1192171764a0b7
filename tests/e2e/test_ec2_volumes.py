"""Volumes and snapshots through boto3 against ``ivfarm ec2 serve`` on libvirt's test driver.

The server's fake hypervisors live in its own process (a ``test:///`` node file opens a private
instance per process), so besides what the API shows these tests read what the provisioner
recorded: whether a volume's disk was made and on which host, and that no job failed. The disks
and the hot-plug themselves are checked on real VMs (tests/integration/test_volumes_real_vms.py)
and the driver calls on the test driver (tests/unit/test_volume_drivers.py).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from sqlalchemy import select

from ivfarm.cli.main import cli
from ivfarm.store.models import Host, Instance, Job, Volume
from tests.e2e.ec2_support import Ec2Site, error_code
from tests.support.polling import poll_until

FAST = {"Delay": 1, "MaxAttempts": 60}
WORKER = "ivfarm-1-worker"
SERVICE = "ivfarm-1-service"


@pytest.fixture
def alpha(ec2_site: Ec2Site) -> Iterator[Any]:
    """alpha's client; the volumes, snapshots and instances a test leaves are removed afterwards."""
    client = ec2_site.client("alpha")
    yield client
    live = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]
    if live:
        client.terminate_instances(InstanceIds=live)
        client.get_waiter("instance_terminated").wait(InstanceIds=live, WaiterConfig=FAST)
    for volume in client.describe_volumes()["Volumes"]:
        poll_until(lambda v=volume["VolumeId"]: _state(client, v) in ("available", "error", None), 30, 0.2)
        if _state(client, volume["VolumeId"]) is not None:
            client.delete_volume(VolumeId=volume["VolumeId"])
    for snapshot in client.describe_snapshots()["Snapshots"]:
        poll_until(lambda s=snapshot["SnapshotId"]: _snapshot(client, s) in ("completed", "error"), 30, 0.2)
        client.delete_snapshot(SnapshotId=snapshot["SnapshotId"])


def _state(client: Any, volume_id: str) -> str | None:
    found = [v["State"] for v in client.describe_volumes()["Volumes"] if v["VolumeId"] == volume_id]
    return found[0] if found else None


def _attachment(client: Any, volume_id: str) -> str | None:
    attachments = client.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"]
    return str(attachments[0]["State"]) if attachments else None


def _snapshot(client: Any, snapshot_id: str) -> str:
    return str(client.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"])


def _running(client: Any, ami: str, zone: str = WORKER, **kwargs: Any) -> str:
    (instance,) = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                                       Placement={"AvailabilityZone": zone}, **kwargs)["Instances"]
    client.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]], WaiterConfig=FAST)
    return str(instance["InstanceId"])


def _placed(site: Ec2Site, volume_id: str) -> int | None:
    """The host whose pool holds the volume's disk (None: not made, or deleted)."""
    with site.site.cloud.store.read() as session:
        volume = session.get(Volume, volume_id)
        return volume.host_id if volume.made and volume.state != "deleted" else None


def _host_of(site: Ec2Site, instance_id: str) -> int:
    with site.site.cloud.store.read() as session:
        return int(session.get(Instance, instance_id).host_id)


def _no_failed_jobs(site: Ec2Site) -> None:
    with site.site.cloud.store.read() as session:
        failed = [(j.kind, j.error) for j in session.scalars(select(Job).where(Job.state == "failed"))]
    assert failed == []


def test_volume_lifecycle_follows_ec2_states_and_waiters(ec2_site: Ec2Site, alpha: Any) -> None:
    instance_id = _running(alpha, ec2_site.ami)
    created = alpha.create_volume(AvailabilityZone=WORKER, Size=2, VolumeType="gp3",
                                  TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}])
    volume_id = created["VolumeId"]
    assert (created["Size"], created["VolumeType"], created["AvailabilityZone"]) == (2, "gp3", WORKER)
    alpha.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    (shown,) = alpha.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    assert shown["Tags"] == [{"Key": "Name", "Value": "data"}] and shown["Attachments"] == []

    attached = alpha.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    assert (attached["State"], attached["Device"], attached["InstanceId"]) == ("attaching", "/dev/sdf", instance_id)
    alpha.get_waiter("volume_in_use").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    poll_until(lambda: _attachment(alpha, volume_id) == "attached", 30, 0.2)
    assert _placed(ec2_site, volume_id) == _host_of(ec2_site, instance_id)  # made there at the first attach
    (instance,) = alpha.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    assert [(m["DeviceName"], m["Ebs"]["VolumeId"], m["Ebs"]["Status"]) for m in instance["BlockDeviceMappings"]] == \
        [("/dev/sdf", volume_id, "attached")]

    with pytest.raises(ClientError) as excinfo:
        alpha.delete_volume(VolumeId=volume_id)
    assert error_code(excinfo) == "VolumeInUse"
    detached = alpha.detach_volume(VolumeId=volume_id)
    assert detached["State"] == "detaching"
    alpha.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    alpha.delete_volume(VolumeId=volume_id)
    alpha.get_waiter("volume_deleted").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    assert _placed(ec2_site, volume_id) is None
    _no_failed_jobs(ec2_site)


def test_attach_to_a_stopped_instance_and_delete_on_termination(ec2_site: Ec2Site, alpha: Any) -> None:
    instance_id = _running(alpha, ec2_site.ami)
    alpha.stop_instances(InstanceIds=[instance_id])
    alpha.get_waiter("instance_stopped").wait(InstanceIds=[instance_id], WaiterConfig=FAST)
    kept, dropped = (alpha.create_volume(AvailabilityZone=WORKER, Size=1)["VolumeId"] for _ in range(2))
    alpha.attach_volume(VolumeId=kept, InstanceId=instance_id, Device="/dev/sdg")
    alpha.attach_volume(VolumeId=dropped, InstanceId=instance_id, Device="/dev/xvdh")
    alpha.get_waiter("volume_in_use").wait(VolumeIds=[kept, dropped], WaiterConfig=FAST)
    poll_until(lambda: _attachment(alpha, kept) == _attachment(alpha, dropped) == "attached", 30, 0.2)
    with ec2_site.site.cloud.store.write() as session:  # ModifyInstanceAttribute is another helper's
        session.get(Volume, dropped).delete_on_termination = True
    alpha.start_instances(InstanceIds=[instance_id])
    alpha.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig=FAST)
    alpha.terminate_instances(InstanceIds=[instance_id])
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[instance_id], WaiterConfig=FAST)
    alpha.get_waiter("volume_available").wait(VolumeIds=[kept], WaiterConfig=FAST)
    alpha.get_waiter("volume_deleted").wait(VolumeIds=[dropped], WaiterConfig=FAST)
    assert _placed(ec2_site, kept) is not None and _placed(ec2_site, dropped) is None
    _no_failed_jobs(ec2_site)


def test_worker_volume_stays_on_its_host(ec2_site: Ec2Site, alpha: Any) -> None:
    first = _running(alpha, ec2_site.ami)
    volume_id = alpha.create_volume(AvailabilityZone=WORKER, Size=1)["VolumeId"]
    alpha.attach_volume(VolumeId=volume_id, InstanceId=first, Device="/dev/sdf")
    poll_until(lambda: _attachment(alpha, volume_id) == "attached", 30, 0.2)
    alpha.detach_volume(VolumeId=volume_id, InstanceId=first)
    alpha.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    with ec2_site.site.cloud.store.read() as session:
        home = session.get(Instance, first).host_id
    with ec2_site.site.cloud.store.write() as session:  # the next launch lands on the other worker
        session.get(Host, home).enabled = False
    try:
        other = _running(alpha, ec2_site.ami)
    finally:
        with ec2_site.site.cloud.store.write() as session:
            session.get(Host, home).enabled = True
    with pytest.raises(ClientError) as excinfo:
        alpha.attach_volume(VolumeId=volume_id, InstanceId=other, Device="/dev/sdf")
    assert error_code(excinfo) == "IncorrectState"
    service = _running(alpha, ec2_site.ami, zone=SERVICE)
    with pytest.raises(ClientError) as excinfo:
        alpha.attach_volume(VolumeId=volume_id, InstanceId=service, Device="/dev/sdf")
    assert error_code(excinfo) == "InvalidVolume.ZoneMismatch"
    assert _state(alpha, volume_id) == "available"


def test_snapshots_restore_into_new_volumes(ec2_site: Ec2Site, alpha: Any) -> None:
    instance_id = _running(alpha, ec2_site.ami)
    volume_id = alpha.create_volume(AvailabilityZone=WORKER, Size=3)["VolumeId"]
    alpha.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    alpha.get_waiter("volume_in_use").wait(VolumeIds=[volume_id], WaiterConfig=FAST)
    poll_until(lambda: _attachment(alpha, volume_id) == "attached", 30, 0.2)
    snapshot = alpha.create_snapshot(VolumeId=volume_id, Description="nightly",
                                     TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}])
    assert (snapshot["State"], snapshot["VolumeSize"], snapshot["Description"]) == ("pending", 3, "nightly")
    alpha.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot["SnapshotId"]], WaiterConfig=FAST)
    (shown,) = alpha.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])["Snapshots"]
    assert shown["Progress"] == "100%" and shown["Tags"] == [{"Key": "k", "Value": "v"}]
    assert shown["OwnerId"] == alpha.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
    restored = alpha.create_volume(AvailabilityZone=WORKER, SnapshotId=snapshot["SnapshotId"])
    assert (restored["Size"], restored["SnapshotId"]) == (3, snapshot["SnapshotId"])
    alpha.get_waiter("volume_available").wait(VolumeIds=[restored["VolumeId"]], WaiterConfig=FAST)
    assert _placed(ec2_site, restored["VolumeId"]) == _placed(ec2_site, volume_id)  # beside its snapshot
    with pytest.raises(ClientError) as excinfo:
        alpha.create_volume(AvailabilityZone=WORKER, SnapshotId=snapshot["SnapshotId"], Size=2)
    assert error_code(excinfo) == "InvalidParameterValue"
    alpha.delete_snapshot(SnapshotId=snapshot["SnapshotId"])
    poll_until(lambda: alpha.describe_snapshots()["Snapshots"] == [], 30, 0.2)
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])
    assert error_code(excinfo) == "InvalidSnapshot.NotFound"


def test_modify_volume_grows_only(ec2_site: Ec2Site, alpha: Any) -> None:
    volume_id = alpha.create_volume(AvailabilityZone=WORKER, Size=2, VolumeType="standard")["VolumeId"]
    changed = alpha.modify_volume(VolumeId=volume_id, Size=5, VolumeType="gp2")["VolumeModification"]
    assert (changed["OriginalSize"], changed["TargetSize"], changed["TargetVolumeType"]) == (2, 5, "gp2")
    assert alpha.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 5
    with pytest.raises(ClientError) as excinfo:
        alpha.modify_volume(VolumeId=volume_id, Size=4)
    assert error_code(excinfo) == "InvalidParameterValue"
    assert alpha.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 5


def test_run_instances_block_device_mapping(ec2_site: Ec2Site, alpha: Any) -> None:
    (instance,) = alpha.run_instances(
        ImageId=ec2_site.ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 3}},
                             {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2, "VolumeType": "gp3"}},
                             {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 1, "DeleteOnTermination": False}},
                             {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}])["Instances"]
    instance_id = instance["InstanceId"]
    alpha.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig=FAST)
    (shown,) = alpha.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    mapped = {m["DeviceName"]: m["Ebs"] for m in shown["BlockDeviceMappings"]}
    assert set(mapped) == {"/dev/sdf", "/dev/sdg"}
    assert {m["Status"] for m in mapped.values()} == {"attached"}
    assert (mapped["/dev/sdf"]["DeleteOnTermination"], mapped["/dev/sdg"]["DeleteOnTermination"]) == (True, False)
    assert _placed(ec2_site, mapped["/dev/sdf"]["VolumeId"]) == _host_of(ec2_site, instance_id)
    with ec2_site.site.cloud.store.read() as session:
        assert session.get(Instance, instance_id).disk_gb == 3  # the root disk grew (m1.tiny: 1 GB)
    kept, dropped = mapped["/dev/sdg"]["VolumeId"], mapped["/dev/sdf"]["VolumeId"]
    alpha.terminate_instances(InstanceIds=[instance_id])
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[instance_id], WaiterConfig=FAST)
    alpha.get_waiter("volume_available").wait(VolumeIds=[kept], WaiterConfig=FAST)
    alpha.get_waiter("volume_deleted").wait(VolumeIds=[dropped], WaiterConfig=FAST)
    _no_failed_jobs(ec2_site)


def test_bad_input_changes_nothing(ec2_site: Ec2Site, alpha: Any) -> None:
    instance_id = _running(alpha, ec2_site.ami)
    volume_id = alpha.create_volume(AvailabilityZone=WORKER, Size=1)["VolumeId"]
    before = alpha.describe_volumes()["Volumes"]
    cases = [
        (lambda: alpha.describe_volumes(VolumeIds=["vol-nope"]), "InvalidVolume.Malformed"),
        (lambda: alpha.describe_volumes(VolumeIds=["vol-0123456789abcdef0"]), "InvalidVolume.NotFound"),
        (lambda: alpha.create_volume(AvailabilityZone="nowhere-1a", Size=1), "InvalidParameterValue"),
        (lambda: alpha.create_volume(AvailabilityZone=WORKER, Size=1, VolumeType="io2"), "InvalidParameterValue"),
        (lambda: alpha.create_volume(AvailabilityZone=WORKER, SnapshotId="snap-0123456789abcdef0"),
         "InvalidSnapshot.NotFound"),
        (lambda: alpha.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sda"),
         "InvalidParameterValue"),
        (lambda: alpha.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/vda"),
         "InvalidParameterValue"),
        (lambda: alpha.attach_volume(VolumeId=volume_id, InstanceId="i-0123456789abcdef0", Device="/dev/sdf"),
         "InvalidInstanceID.NotFound"),
        (lambda: alpha.detach_volume(VolumeId=volume_id), "IncorrectState"),
        (lambda: alpha.delete_snapshot(SnapshotId="snap-0123456789abcdef0"), "InvalidSnapshot.NotFound"),
        (lambda: alpha.create_snapshot(VolumeId="vol-0123456789abcdef0"), "InvalidVolume.NotFound"),
        (lambda: alpha.modify_volume(VolumeId="vol-0123456789abcdef0", Size=9), "InvalidVolume.NotFound"),
    ]
    for call, code in cases:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == code
    with pytest.raises(ClientError) as excinfo:
        alpha.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf", DryRun=True)
    assert error_code(excinfo) == "DryRunOperation"
    assert alpha.describe_volumes()["Volumes"] == before


def test_pagination_filters_and_status(ec2_site: Ec2Site, alpha: Any) -> None:
    made = [alpha.create_volume(AvailabilityZone=WORKER, Size=size)["VolumeId"] for size in (1, 2, 3, 4, 5, 6)]
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = alpha.describe_volumes(MaxResults=5, **token)
        seen += [v["VolumeId"] for v in page["Volumes"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert sorted(seen) == sorted(made)
    sized = alpha.describe_volumes(Filters=[{"Name": "size", "Values": ["2", "3"]}])["Volumes"]
    assert sorted(v["Size"] for v in sized) == [2, 3]
    assert alpha.describe_volumes(Filters=[{"Name": "status", "Values": ["in-use"]}])["Volumes"] == []
    statuses = alpha.describe_volume_status(VolumeIds=made[:2])["VolumeStatuses"]
    assert [s["VolumeStatus"]["Status"] for s in statuses] == ["ok", "ok"]


def test_volume_quotas_are_atomic_and_shown(ec2_site: Ec2Site, alpha: Any) -> None:
    runner = CliRunner()  # the sysadmin sets them with the CLI
    done = runner.invoke(cli, ["--config", str(ec2_site.site.config_path), "quota", "set", "alpha", "--volumes", "2",
                               "--volume-gb", "5"])
    assert done.exit_code == 0, done.output
    try:
        attributes = {a["AttributeName"]: a["AttributeValues"][0]["AttributeValue"]
                      for a in alpha.describe_account_attributes()["AccountAttributes"]}
        assert (attributes["max-volumes"], attributes["max-volume-gib"]) == ("2", "5")
        first = alpha.create_volume(AvailabilityZone=WORKER, Size=4)["VolumeId"]
        with pytest.raises(ClientError) as excinfo:
            alpha.create_volume(AvailabilityZone=WORKER, Size=2)
        assert error_code(excinfo) == "VolumeLimitExceeded"
        with pytest.raises(ClientError) as excinfo:
            alpha.modify_volume(VolumeId=first, Size=6)
        assert error_code(excinfo) == "VolumeLimitExceeded"
        alpha.create_volume(AvailabilityZone=WORKER, Size=1)
        with pytest.raises(ClientError) as excinfo:
            alpha.create_volume(AvailabilityZone=WORKER, Size=1)
        assert error_code(excinfo) == "VolumeLimitExceeded"
        assert len(alpha.describe_volumes()["Volumes"]) == 2
    finally:
        runner.invoke(cli, ["--config", str(ec2_site.site.config_path), "quota", "set", "alpha", "--volumes", "20",
                            "--volume-gb", "500"])
