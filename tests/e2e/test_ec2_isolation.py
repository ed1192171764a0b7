"""Farm isolation: another farm's ids answer exactly as ids that do not exist, and nothing changes."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ivfarm import ids
from ivfarm.store.models import Image
from tests.e2e.ec2_support import Ec2Site
from tests.support.polling import poll_until

FAST = {"Delay": 1, "MaxAttempts": 60}


def _state(client: Any) -> dict[str, Any]:
    """Everything a farm's users can see of their farm."""
    instances = sorted((i["InstanceId"], i["State"]["Name"], i.get("PublicIpAddress"))
                       for r in client.describe_instances()["Reservations"] for i in r["Instances"])
    return {
        "instances": instances,
        "keys": sorted((k["KeyPairId"], k["KeyName"]) for k in client.describe_key_pairs()["KeyPairs"]),
        "addresses": sorted((a["PublicIp"], a.get("AllocationId"), a.get("InstanceId"), a.get("AssociationId"))
                            for a in client.describe_addresses()["Addresses"]),
        "tags": sorted((t["ResourceId"], t["Key"], t["Value"]) for t in client.describe_tags()["Tags"]),
        "images": sorted(i["ImageId"] for i in client.describe_images()["Images"]),
        "volumes": sorted((v["VolumeId"], v["State"], v["Size"], tuple(a["InstanceId"] for a in v["Attachments"]))
                          for v in client.describe_volumes()["Volumes"]),
        "snapshots": sorted((s["SnapshotId"], s["State"]) for s in client.describe_snapshots()["Snapshots"]),
        "placement_groups": sorted((g["GroupId"], g["GroupName"])
                                   for g in client.describe_placement_groups()["PlacementGroups"]),
    }


@pytest.fixture(scope="module")
def world(ec2_site: Ec2Site) -> dict[str, Any]:
    """alpha owns a running instance with an elastic IP, a key pair, tags and a private image."""
    alpha = ec2_site.client("alpha")
    alpha.create_key_pair(KeyName="secret-key")
    (instance,) = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1,
                                      KeyName="secret-key")["Instances"]
    iid = instance["InstanceId"]
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    (address,) = alpha.describe_addresses()["Addresses"]
    association = alpha.associate_address(AllocationId=address["AllocationId"], InstanceId=iid)["AssociationId"]
    key_id = alpha.describe_key_pairs()["KeyPairs"][0]["KeyPairId"]
    alpha.create_tags(Resources=[iid, key_id, address["AllocationId"]], Tags=[{"Key": "owner", "Value": "alpha"}])
    private_ami = ec2_site.site.add_image("alpha-private", public=False)
    with ec2_site.site.cloud.store.write() as session:
        session.get(Image, private_ami).owner_farm_id = ec2_site.farms["alpha"].farm_id
    beta = ec2_site.client("beta")
    (own,) = beta.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1)["Instances"]
    beta.get_waiter("instance_running").wait(InstanceIds=[own["InstanceId"]], WaiterConfig=FAST)
    (beta_address,) = beta.describe_addresses()["Addresses"]
    volume = alpha.create_volume(AvailabilityZone="ivfarm-1-worker", Size=1)["VolumeId"]
    alpha.attach_volume(VolumeId=volume, InstanceId=iid, Device="/dev/sdf")
    poll_until(lambda: alpha.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"][0]["State"]
               == "attached", 30, 0.2)
    snapshot = alpha.create_snapshot(VolumeId=volume)["SnapshotId"]
    alpha.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot], WaiterConfig=FAST)
    beta_volume = beta.create_volume(AvailabilityZone="ivfarm-1-worker", Size=1)["VolumeId"]
    alpha.create_placement_group(GroupName="alpha-spread", Strategy="spread")
    group = alpha.describe_placement_groups()["PlacementGroups"][0]["GroupId"]
    return {"placement_group": group, "placement_group_name": "alpha-spread","volume": volume, "snapshot": snapshot, "beta_volume": beta_volume, "public_ami": ec2_site.ami,"instance": iid, "key_id": key_id, "key_name": "secret-key", "allocation": address["AllocationId"],
            "public_ip": address["PublicIp"], "association": association, "image": private_ami,
            "beta_instance": own["InstanceId"], "beta_allocation": beta_address["AllocationId"]}


def _absent(kind: str) -> str:
    return ids.new_id(kind)


# (description, call on beta's client with the id, kind of absent id of the same shape, key into world)
CASES: list[tuple[str, Callable[[Any, str, dict[str, Any]], Any], str, str]] = [
    ("DescribeInstances", lambda c, x, w: c.describe_instances(InstanceIds=[x]), "instance", "instance"),
    ("DescribeInstanceStatus", lambda c, x, w: c.describe_instance_status(InstanceIds=[x]), "instance", "instance"),
    ("DescribeInstanceAttribute", lambda c, x, w: c.describe_instance_attribute(InstanceId=x, Attribute="userData"),
     "instance", "instance"),
    ("StartInstances", lambda c, x, w: c.start_instances(InstanceIds=[x]), "instance", "instance"),
    ("StopInstances", lambda c, x, w: c.stop_instances(InstanceIds=[x]), "instance", "instance"),
    ("RebootInstances", lambda c, x, w: c.reboot_instances(InstanceIds=[x]), "instance", "instance"),
    ("TerminateInstances", lambda c, x, w: c.terminate_instances(InstanceIds=[x]), "instance", "instance"),
    ("GetConsoleOutput", lambda c, x, w: c.get_console_output(InstanceId=x), "instance", "instance"),
    ("AssociateAddress(instance)", lambda c, x, w: c.associate_address(
        InstanceId=x, AllocationId=w["beta_allocation"]), "instance", "instance"),
    ("CreateTags(instance)", lambda c, x, w: c.create_tags(Resources=[x], Tags=[{"Key": "k", "Value": "v"}]),
     "instance", "instance"),
    ("DeleteTags(instance)", lambda c, x, w: c.delete_tags(Resources=[x]), "instance", "instance"),
    ("DescribeKeyPairs(id)", lambda c, x, w: c.describe_key_pairs(KeyPairIds=[x]), "keypair", "key_id"),
    ("DeleteKeyPair(id)", lambda c, x, w: c.delete_key_pair(KeyPairId=x), "keypair", "key_id"),
    ("CreateTags(key)", lambda c, x, w: c.create_tags(Resources=[x], Tags=[{"Key": "k", "Value": "v"}]),
     "keypair", "key_id"),
    ("DescribeAddresses(allocation)", lambda c, x, w: c.describe_addresses(AllocationIds=[x]),
     "allocation", "allocation"),
    ("AssociateAddress(allocation)", lambda c, x, w: c.associate_address(
        AllocationId=x, InstanceId=w["beta_instance"]), "allocation", "allocation"),
    ("ReleaseAddress(allocation)", lambda c, x, w: c.release_address(AllocationId=x), "allocation", "allocation"),
    ("CreateTags(allocation)", lambda c, x, w: c.create_tags(Resources=[x], Tags=[{"Key": "k", "Value": "v"}]),
     "allocation", "allocation"),
    ("DeleteTags(allocation)", lambda c, x, w: c.delete_tags(Resources=[x]), "allocation", "allocation"),
    ("DisassociateAddress(association)", lambda c, x, w: c.disassociate_address(AssociationId=x),
     "association", "association"),
    ("DescribeImages", lambda c, x, w: c.describe_images(ImageIds=[x]), "image", "image"),
    ("RunInstances(image)", lambda c, x, w: c.run_instances(ImageId=x, MinCount=1, MaxCount=1), "image", "image"),
    ("DeregisterImage", lambda c, x, w: c.deregister_image(ImageId=x), "image", "image"),
    ("DescribeImageAttribute", lambda c, x, w: c.describe_image_attribute(ImageId=x, Attribute="launchPermission"),
     "image", "image"),
    ("ModifyImageAttribute", lambda c, x, w: c.modify_image_attribute(
        ImageId=x, LaunchPermission={"Add": [{"UserId": "000000000002"}]}), "image", "image"),
    ("ResetImageAttribute", lambda c, x, w: c.reset_image_attribute(ImageId=x, Attribute="launchPermission"),
     "image", "image"),
    ("CreateImage(instance)", lambda c, x, w: c.create_image(InstanceId=x, Name="stolen image"),
     "instance", "instance"),
    ("ModifyInstanceAttribute(type)", lambda c, x, w: c.modify_instance_attribute(
        InstanceId=x, InstanceType={"Value": "m1.small"}), "instance", "instance"),
    ("ModifyInstanceAttribute(protection)", lambda c, x, w: c.modify_instance_attribute(
        InstanceId=x, DisableApiTermination={"Value": True}), "instance", "instance"),
    ("DescribeVolumes", lambda c, x, w: c.describe_volumes(VolumeIds=[x]), "volume", "volume"),
    ("DescribeVolumeStatus", lambda c, x, w: c.describe_volume_status(VolumeIds=[x]), "volume", "volume"),
    ("DeleteVolume", lambda c, x, w: c.delete_volume(VolumeId=x), "volume", "volume"),
    ("AttachVolume(volume)", lambda c, x, w: c.attach_volume(VolumeId=x, InstanceId=w["beta_instance"],
                                                             Device="/dev/sdg"), "volume", "volume"),
    ("AttachVolume(instance)", lambda c, x, w: c.attach_volume(VolumeId=w["beta_volume"], InstanceId=x,
                                                               Device="/dev/sdg"), "instance", "instance"),
    ("DetachVolume", lambda c, x, w: c.detach_volume(VolumeId=x), "volume", "volume"),
    ("ModifyVolume", lambda c, x, w: c.modify_volume(VolumeId=x, Size=2), "volume", "volume"),
    ("CreateSnapshot", lambda c, x, w: c.create_snapshot(VolumeId=x), "volume", "volume"),
    ("CreateTags(volume)", lambda c, x, w: c.create_tags(Resources=[x], Tags=[{"Key": "k", "Value": "v"}]),
     "volume", "volume"),
    ("DescribeSnapshots", lambda c, x, w: c.describe_snapshots(SnapshotIds=[x]), "snapshot", "snapshot"),
    ("DeleteSnapshot", lambda c, x, w: c.delete_snapshot(SnapshotId=x), "snapshot", "snapshot"),
    ("CreateVolume(snapshot)", lambda c, x, w: c.create_volume(AvailabilityZone="ivfarm-1-worker", SnapshotId=x),
     "snapshot", "snapshot"),
    ("RunInstances(snapshot)", lambda c, x, w: c.run_instances(
        ImageId=w["public_ami"], MinCount=1, MaxCount=1,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": x}}]), "snapshot", "snapshot"),
    ("CreateTags(snapshot)", lambda c, x, w: c.create_tags(Resources=[x], Tags=[{"Key": "k", "Value": "v"}]),
     "snapshot", "snapshot"),
]
# References that are not ids: (case, key of the other farm's value in `world`, an absent value, call)
REFERENCE_CASES: list[tuple[str, str, str, Callable[[Any, str], Any]]] = [
    ("DescribeAddresses(ip)", "public_ip", "203.0.113.77", lambda c, x: c.describe_addresses(PublicIps=[x])),
    ("AssociateAddress(ip)", "public_ip", "203.0.113.77",
     lambda c, x: c.associate_address(PublicIp=x, InstanceId="i-0123456789abcdef0")),
    ("DisassociateAddress(ip)", "public_ip", "203.0.113.77", lambda c, x: c.disassociate_address(PublicIp=x)),
    ("ReleaseAddress(ip)", "public_ip", "203.0.113.77", lambda c, x: c.release_address(PublicIp=x)),
    ("DescribeKeyPairs(name)", "key_name", "no-such-key", lambda c, x: c.describe_key_pairs(KeyNames=[x])),
    ("RunInstances(key name)", "key_name", "no-such-key",
     lambda c, x: c.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, KeyName=x)),
]


def _error(call: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as excinfo:
        call()
    response = excinfo.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def _same_answer(theirs: tuple[str, str, int], absent: tuple[str, str, int], their_id: str, absent_id: str) -> None:
    assert theirs[0] == absent[0] and theirs[2] == absent[2]
    assert theirs[1].replace(their_id, "<id>") == absent[1].replace(absent_id, "<id>")
    assert theirs[0].endswith(".NotFound")


@pytest.mark.parametrize(("name", "call", "kind", "field"), CASES, ids=[c[0] for c in CASES])
def test_other_farms_ids_look_absent(ec2_site: Ec2Site, world: dict[str, Any], name: str,
                                     call: Callable[[Any, str, dict[str, Any]], Any], kind: str, field: str) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    before_alpha, before_beta = _state(alpha), _state(beta)
    theirs = world[field]
    absent = _absent(kind)
    _same_answer(_error(lambda: call(beta, theirs, world)), _error(lambda: call(beta, absent, world)), theirs, absent)
    assert _state(alpha) == before_alpha and _state(beta) == before_beta


@pytest.mark.parametrize(("name", "key", "absent", "call"), REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_other_farms_addresses_and_key_names_look_absent(ec2_site: Ec2Site, world: dict[str, Any], name: str, key: str,
                                                         absent: str, call: Callable[[Any, str], Any]) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    before = _state(alpha)
    theirs = world[key]
    _same_answer(_error(lambda: call(beta, theirs)), _error(lambda: call(beta, absent)), theirs, absent)
    assert _state(alpha) == before


# Placement groups answer InvalidPlacementGroup.Unknown (not .NotFound), for theirs as for absent ones:
# (case, key of the other farm's value in `world`, an absent value, call)
PLACEMENT_CASES: list[tuple[str, str, str, Callable[[Any, str], Any]]] = [
    ("DescribePlacementGroups(name)", "placement_group_name", "no-such-group",
     lambda c, x: c.describe_placement_groups(GroupNames=[x])),
    ("DescribePlacementGroups(id)", "placement_group", ids.new_id("placement_group"),
     lambda c, x: c.describe_placement_groups(GroupIds=[x])),
    ("DeletePlacementGroup", "placement_group_name", "no-such-group", lambda c, x: c.delete_placement_group(GroupName=x)),
    ("RunInstances(placement group name)", "placement_group_name", "no-such-group",
     lambda c, x: c.run_instances(ImageId=c.describe_images()["Images"][0]["ImageId"], MinCount=1, MaxCount=1,
                                  Placement={"GroupName": x})),
    ("RunInstances(placement group id)", "placement_group", ids.new_id("placement_group"),
     lambda c, x: c.run_instances(ImageId=c.describe_images()["Images"][0]["ImageId"], MinCount=1, MaxCount=1,
                                  Placement={"GroupId": x})),
    ("CreateTags(placement group)", "placement_group", ids.new_id("placement_group"),
     lambda c, x: c.create_tags(Resources=[x], Tags=[{"Key": "k", "Value": "v"}])),
]


@pytest.mark.parametrize(("name", "key", "absent", "call"), PLACEMENT_CASES, ids=[c[0] for c in PLACEMENT_CASES])
def test_other_farms_placement_groups_look_absent(ec2_site: Ec2Site, world: dict[str, Any], name: str, key: str,
                                                  absent: str, call: Callable[[Any, str], Any]) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    before_alpha, before_beta = _state(alpha), _state(beta)
    theirs = world[key]
    their_answer, absent_answer = _error(lambda: call(beta, theirs)), _error(lambda: call(beta, absent))
    assert their_answer[0] == absent_answer[0] == "InvalidPlacementGroup.Unknown"
    assert their_answer[2] == absent_answer[2] == 400
    assert their_answer[1].replace(theirs, "<id>") == absent_answer[1].replace(absent, "<id>")
    assert _state(alpha) == before_alpha and _state(beta) == before_beta


def test_lists_show_only_the_farms_own(ec2_site: Ec2Site, world: dict[str, Any]) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    before = _state(alpha)
    seen = _state(beta)
    assert world["instance"] not in {i[0] for i in seen["instances"]}
    assert seen["keys"] == [] and world["image"] not in seen["images"]
    assert world["public_ip"] not in {a[0] for a in seen["addresses"]}
    assert all(t[0] != world["instance"] for t in seen["tags"])
    assert [v[0] for v in seen["volumes"]] == [world["beta_volume"]] and seen["snapshots"] == []
    beta.delete_key_pair(KeyName=world["key_name"])  # a missing name is fine, and alpha's key stays
    beta.create_key_pair(KeyName=world["key_name"])  # names are per farm
    assert _state(alpha) == before
    assert [k["KeyName"] for k in beta.describe_key_pairs()["KeyPairs"]] == [world["key_name"]]
    beta.delete_key_pair(KeyName=world["key_name"])
    assert seen["placement_groups"] == []
    beta.create_placement_group(GroupName=world["placement_group_name"], Strategy="spread")  # names are per farm
    assert _state(alpha) == before
    beta.delete_placement_group(GroupName=world["placement_group_name"])
    assert [g["GroupName"] for g in alpha.describe_placement_groups()["PlacementGroups"]] == ["alpha-spread"]
