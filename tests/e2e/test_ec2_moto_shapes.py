"""Response shapes compared with moto's for the same calls, and with botocore's EC2 model.

moto is only the reference here: the same Query requests go to ivfarm and to a moto server on
loopback, and the XML trees are compared: an element name both produce sits at the same place,
and leaf values have compatible types. Every element ivfarm sends must exist in botocore's model.
"""
from __future__ import annotations

import base64
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.server import ThreadedMotoServer

from tests.e2e.ec2_support import Ec2Site
from tests.support.localsite import QueryClient
from tests.support.polling import poll_until

GENERIC = {"item", "value", "key", "code", "name", "message", "status", "return", "requestId", "state"}
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
MODEL = botocore.session.get_session().get_service_model("ec2")


@pytest.fixture(scope="module")
def moto() -> Iterator[QueryClient]:
    """A moto EC2 server on a free loopback port (any credentials)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = QueryClient(f"http://{host}:{port}/", "AKIAMOTOMOTOMOTO0000", "x" * 40, "us-east-1")
    yield client
    client.close()
    server.stop()


def _strip(tag: str) -> str:
    return tag.rpartition("}")[2]


def paths(xml: bytes) -> dict[tuple[str, ...], set[str]]:
    """Every element path (root excluded) with the kinds of text found there."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(node: ET.Element, prefix: tuple[str, ...]) -> None:
        for child in node:
            path = (*prefix, _strip(child.tag))
            kinds = found.setdefault(path, set())
            if len(child) == 0 and (child.text or "").strip():
                kinds.add(kind(child.text.strip()))
            walk(child, path)

    walk(ET.fromstring(xml), ())
    return found


def kind(text: str) -> str:
    if text in ("true", "false"):
        return "bool"
    if re.fullmatch(r"-?\d+", text):
        return "int-or-id"
    if _TIMESTAMP.match(text):
        return "timestamp"
    return "string"


def compare(ours: bytes, theirs: bytes) -> set[tuple[str, ...]]:
    """Assert shapes agree; returns the paths both produce."""
    mine, reference = paths(ours), paths(theirs)
    assert ET.fromstring(ours).tag.rpartition("}")[2] == ET.fromstring(theirs).tag.rpartition("}")[2]
    by_name: dict[str, set[tuple[str, ...]]] = {}
    for path in reference:
        by_name.setdefault(path[-1], set()).add(path)
    for path in mine:
        name = path[-1]
        if name in GENERIC or name not in by_name:
            continue
        assert path in by_name[name], f"{'/'.join(path)}: moto has {name} at {sorted(by_name[name])}"
    common = set(mine) & set(reference)
    for path in common:
        a, b = mine[path], reference[path]
        if a and b and not ("string" in a | b and a | b <= {"string", "int-or-id"}):
            assert a == b, f"{'/'.join(path)}: ivfarm values are {a}, moto's are {b}"
    return common


def conforms(xml: bytes, action: str) -> None:
    """Every element ivfarm sends is a member of botocore's output shape for ``action``."""
    def walk(node: ET.Element, shape: Any, where: str) -> None:
        if shape.type_name == "list":
            for child in node:
                assert _strip(child.tag) == shape.serialization.get("name", "item") or _strip(child.tag) == "item", where
                walk(child, shape.member, f"{where}/item")
            return
        if shape.type_name != "structure":
            assert len(node) == 0, f"{where} should be a leaf"
            return
        members = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        for child in node:
            name = _strip(child.tag)
            if name == "requestId" and where == action:
                continue
            assert name in members, f"{where}/{name} is not in botocore's model"
            walk(child, members[name], f"{where}/{name}")

    root, shape = ET.fromstring(xml), MODEL.operation_model(action).output_shape
    if shape is None:  # botocore reads nothing of the body; EC2 sends <return>true</return>
        assert {_strip(child.tag) for child in root} <= {"requestId", "return"}
        return
    walk(root, shape, action)


def call(client: QueryClient, params: dict[str, str]) -> bytes:
    status, body = client.call(params)
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def moto_ami(moto: QueryClient) -> str:
    body = call(moto, {"Action": "DescribeImages", "Owner.1": "amazon"})
    return str(re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", body).group(1).decode())  # type: ignore[union-attr]


def _id(xml: bytes, tag: str) -> str:
    return str(re.search(rf"<{tag}>([^<]+)</{tag}>".encode(), xml).group(1).decode())  # type: ignore[union-attr]


PUBLIC_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)

Step = tuple[str, Callable[[dict[str, str]], dict[str, str]], Callable[[bytes], dict[str, str]]]
# (action, params from what earlier steps found, what to remember from the answer)
STEPS: list[Step] = [
    ("DescribeRegions", lambda s: {}, lambda x: {}),
    ("DescribeAvailabilityZones", lambda s: {}, lambda x: {}),
    ("DescribeAccountAttributes", lambda s: {}, lambda x: {}),
    ("DescribeImages", lambda s: {"ImageId.1": s["ami"]}, lambda x: {}),
    ("DescribeInstanceTypes", lambda s: {"InstanceType.1": "m1.small"}, lambda x: {}),
    ("CreateKeyPair", lambda s: {"KeyName": "shape-key"}, lambda x: {}),
    ("ImportKeyPair", lambda s: {"KeyName": "shape-imported",
                                 "PublicKeyMaterial": base64.b64encode(PUBLIC_KEY).decode()}, lambda x: {}),
    ("DescribeKeyPairs", lambda s: {"KeyName.1": "shape-key"}, lambda x: {}),
    ("RunInstances", lambda s: {"ImageId": s["ami"], "MinCount": "1", "MaxCount": "1", "InstanceType": "m1.small",
                                "KeyName": "shape-key", "TagSpecification.1.ResourceType": "instance",
                                "SecurityGroup.1": "default",
                                "TagSpecification.1.Tag.1.Key": "Name",
                                "TagSpecification.1.Tag.1.Value": "shape"},
     lambda x: {"instance": _id(x, "instanceId")}),
    ("DescribeInstances", lambda s: {"InstanceId.1": s["instance"]}, lambda x: {}),
    ("DescribeVpcs", lambda s: {}, lambda x: {}),
    ("DescribeSubnets", lambda s: {}, lambda x: {}),
    ("DescribeInternetGateways", lambda s: {}, lambda x: {}),
    ("DescribeNetworkInterfaces", lambda s: {"Filter.1.Name": "attachment.instance-id",
                                             "Filter.1.Value.1": s["instance"]}, lambda x: {}),
    ("DescribeInstanceStatus", lambda s: {"InstanceId.1": s["instance"], "IncludeAllInstances": "true"},
     lambda x: {}),
    ("DescribeInstanceAttribute", lambda s: {"InstanceId": s["instance"], "Attribute": "instanceType"},
     lambda x: {}),
    ("ModifyInstanceAttribute", lambda s: {"InstanceId": s["instance"], "DisableApiTermination.Value": "false"},
     lambda x: {}),
    ("CreateImage", lambda s: {"InstanceId": s["instance"], "Name": "shape image", "NoReboot": "true"},
     lambda x: {"image": _id(x, "imageId")}),
    ("DescribeImageAttribute", lambda s: {"ImageId": s["image"], "Attribute": "launchPermission"}, lambda x: {}),
    ("ModifyImageAttribute", lambda s: {"ImageId": s["image"], "Description.Value": "shaped"}, lambda x: {}),
    ("DescribeImageAttribute", lambda s: {"ImageId": s["image"], "Attribute": "description"}, lambda x: {}),
    ("DeregisterImage", lambda s: {"ImageId": s["image"]}, lambda x: {}),
    ("CreateTags", lambda s: {"ResourceId.1": s["instance"], "Tag.1.Key": "env", "Tag.1.Value": "test"},
     lambda x: {}),
    ("DescribeTags", lambda s: {"Filter.1.Name": "resource-id", "Filter.1.Value.1": s["instance"]},
     lambda x: {}),
    ("AllocateAddress", lambda s: {"Domain": "vpc"}, lambda x: {"allocation": _id(x, "allocationId")}),
    ("DescribeAddresses", lambda s: {"AllocationId.1": s["allocation"]}, lambda x: {}),
    ("CreateVolume", lambda s: {"AvailabilityZone": s["zone"], "Size": "1", "VolumeType": "gp2",
                                "TagSpecification.1.ResourceType": "volume", "TagSpecification.1.Tag.1.Key": "Name",
                                "TagSpecification.1.Tag.1.Value": "shape"}, lambda x: {"volume": _id(x, "volumeId")}),
    ("DescribeVolumes", lambda s: {"VolumeId.1": s["volume"]}, lambda x: {}),
    ("AttachVolume", lambda s: {"VolumeId": s["volume"], "InstanceId": s["instance"], "Device": "/dev/sdf"},
     lambda x: {}),
    ("CreateSnapshot", lambda s: {"VolumeId": s["volume"], "Description": "shape"},
     lambda x: {"snapshot": _id(x, "snapshotId")}),
    ("DescribeSnapshots", lambda s: {"SnapshotId.1": s["snapshot"]}, lambda x: {}),
    ("ModifyVolume", lambda s: {"VolumeId": s["volume"], "Size": "2"}, lambda x: {}),
    ("DetachVolume", lambda s: {"VolumeId": s["volume"], "InstanceId": s["instance"]}, lambda x: {}),
    ("DeleteSnapshot", lambda s: {"SnapshotId": s["snapshot"]}, lambda x: {}),
    ("DeleteVolume", lambda s: {"VolumeId": s["volume"]}, lambda x: {}),
    ("StopInstances", lambda s: {"InstanceId.1": s["instance"]}, lambda x: {}),
    ("TerminateInstances", lambda s: {"InstanceId.1": s["instance"]}, lambda x: {}),
    ("ReleaseAddress", lambda s: {"AllocationId": s["allocation"]}, lambda x: {}),
    ("DeleteKeyPair", lambda s: {"KeyName": "shape-imported"}, lambda x: {}),
    ("CreateSecurityGroup", lambda s: {"GroupName": "shape-web", "GroupDescription": "web"},
     lambda x: {"group": _id(x, "groupId")}),
    ("AuthorizeSecurityGroupIngress", lambda s: {
        "GroupId": s["group"], "IpPermissions.1.IpProtocol": "tcp", "IpPermissions.1.FromPort": "80",
        "IpPermissions.1.ToPort": "80", "IpPermissions.1.IpRanges.1.CidrIp": "0.0.0.0/0"}, lambda x: {}),
    ("DescribeSecurityGroups", lambda s: {"GroupId.1": s["group"]}, lambda x: {}),
    ("DescribeSecurityGroupRules", lambda s: {"Filter.1.Name": "group-id", "Filter.1.Value.1": s["group"]},
     lambda x: {}),
    ("RevokeSecurityGroupIngress", lambda s: {
        "GroupId": s["group"], "IpPermissions.1.IpProtocol": "tcp", "IpPermissions.1.FromPort": "80",
        "IpPermissions.1.ToPort": "80", "IpPermissions.1.IpRanges.1.CidrIp": "0.0.0.0/0"}, lambda x: {}),
    ("DeleteSecurityGroup", lambda s: {"GroupId": s["group"]}, lambda x: {}),
]
# Actions moto does not serve (5.x has no placement groups): checked against botocore's model only
MODEL_ONLY: list[tuple[str, dict[str, str]]] = [
    ("CreatePlacementGroup", {"GroupName": "shape-spread", "Strategy": "spread",
                              "TagSpecification.1.ResourceType": "placement-group",
                              "TagSpecification.1.Tag.1.Key": "Name", "TagSpecification.1.Tag.1.Value": "shape"}),
    ("DescribePlacementGroups", {"GroupName.1": "shape-spread"}),
    ("DeletePlacementGroup", {"GroupName": "shape-spread"}),
]


def test_shapes_match_moto_and_botocore(ec2_site: Ec2Site, moto: QueryClient, moto_ami: str) -> None:
    ours, theirs = ec2_site.raw("beta"), moto
    found_ours: dict[str, str] = {"ami": ec2_site.ami, "zone": "ivfarm-1-worker"}
    found_theirs: dict[str, str] = {"ami": moto_ami, "zone": "us-east-1a"}
    client = ec2_site.client("beta")
    fast = {"Delay": 1, "MaxAttempts": 30}
    waits: dict[str, Callable[[], None]] = {  # ivfarm answers at once, as EC2: let the work finish first
        "StopInstances": lambda: client.get_waiter("instance_running").wait(
            InstanceIds=[found_ours["instance"]], WaiterConfig=fast),
        "AttachVolume": lambda: client.get_waiter("instance_running").wait(
            InstanceIds=[found_ours["instance"]], WaiterConfig=fast),
        "CreateSnapshot": lambda: poll_until(lambda: [a["State"] for a in client.describe_volumes(
            VolumeIds=[found_ours["volume"]])["Volumes"][0]["Attachments"]] == ["attached"], 30, 0.2),
        "DetachVolume": lambda: client.get_waiter("snapshot_completed").wait(
            SnapshotIds=[found_ours["snapshot"]], WaiterConfig=fast),
        "DeleteVolume": lambda: client.get_waiter("volume_available").wait(VolumeIds=[found_ours["volume"]],
                                                                          WaiterConfig=fast),
        "CreateImage": lambda: client.get_waiter("instance_running").wait(
            InstanceIds=[found_ours["instance"]], WaiterConfig=fast),
        "DeregisterImage": lambda: client.get_waiter("image_available").wait(  # a pending image cannot go yet
            ImageIds=[found_ours["image"]], WaiterConfig=fast),
    }
    compared = 0
    for action, params, remember in STEPS:
        if action in waits:
            waits[action]()
        mine = call(ours, {"Action": action, **params(found_ours)})
        reference = call(theirs, {"Action": action, **params(found_theirs)})
        conforms(mine, action)
        compared += len(compare(mine, reference))
        found_ours.update(remember(mine))
        found_theirs.update(remember(reference))
    assert compared > 150  # the trees really overlap: instances, images, keys, addresses, tags


def test_shapes_moto_lacks_match_botocore(ec2_site: Ec2Site) -> None:
    ours = ec2_site.raw("beta")
    answers = {}
    for action, params in MODEL_ONLY:
        answers[action] = call(ours, {"Action": action, **params})
        conforms(answers[action], action)
    ns = {"ec2": "http://ec2.amazonaws.com/doc/2016-11-15/"}
    (item,) = ET.fromstring(answers["DescribePlacementGroups"]).findall("ec2:placementGroupSet/ec2:item", ns)
    assert [item.findtext(f"ec2:{name}", namespaces=ns) for name in ("groupName", "strategy", "state")] == \
        ["shape-spread", "spread", "available"]
    assert re.fullmatch(r"pg-[0-9a-f]{17}", item.findtext("ec2:groupId", namespaces=ns) or "")
    empty = ET.fromstring(call(ours, {"Action": "DescribePlacementGroups"}))
    assert empty.findall("ec2:placementGroupSet/ec2:item", ns) == []


def test_error_shape_matches_moto(ec2_site: Ec2Site, moto: QueryClient) -> None:
    params = {"Action": "DescribeInstances", "InstanceId.1": "i-0123456789abcdef0"}
    status, mine = ec2_site.raw("beta").call(params)
    moto_status, reference = moto.call(params)
    assert status == moto_status == 400
    assert set(paths(mine)) == set(paths(reference)) == {
        ("Errors",), ("Errors", "Error"), ("Errors", "Error", "Code"), ("Errors", "Error", "Message"), ("RequestID",)}
    codes = [[e.text for e in ET.fromstring(xml).iter() if _strip(e.tag) == "Code"] for xml in (mine, reference)]
    assert codes[0] == codes[1] == ["InvalidInstanceID.NotFound"]


def test_comparison_catches_misplaced_elements_and_types() -> None:
    reference = (b"<R><instancesSet><item><instanceId>i-1</instanceId><launchTime>2024-01-01T00:00:00Z</launchTime>"
                 b"<placement><availabilityZone>a</availabilityZone></placement></item></instancesSet></R>")
    good = (b"<R><instancesSet><item><instanceId>i-2</instanceId><launchTime>2025-01-01T00:00:00.000Z</launchTime>"
            b"<placement><availabilityZone>b</availabilityZone></placement><extra>1</extra></item></instancesSet></R>")
    assert ("instancesSet", "item", "instanceId") in compare(good, reference)
    misplaced = good.replace(b"<placement><availabilityZone>b</availabilityZone></placement>",
                             b"<availabilityZone>b</availabilityZone>")
    with pytest.raises(AssertionError):
        compare(misplaced, reference)
    wrong_type = good.replace(b"2025-01-01T00:00:00.000Z", b"true")
    with pytest.raises(AssertionError):
        compare(wrong_type, reference)
