"""Property: malformed requests to any action get a 4xx EC2 error, never a 5xx, and change nothing.

Each example is one action with a random mix of sensible and junk values (random text, huge and
negative numbers, ids of every shape, bad base64, unknown filters), made certainly unacceptable by
one of: DryRun=true (a request that would pass answers DryRunOperation), a poisoned parameter
(an always-invalid value for that action), or an unknown parameter. Unknown and missing actions too.
"""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivfarm import ids
from tests.e2e.ec2_support import start_site
from tests.support.localsite import QueryClient
from tests.support.polling import poll_until

FAST = {"Delay": 1, "MaxAttempts": 60}
_REQUEST_ID = re.compile(rb"<requestId>[^<]*</requestId>")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A farm with a running and a stopped instance, a key pair, tags, an associated elastic IP, a
    security group with a rule and a placement group."""
    # thousands of requests a minute from one farm: throttling (its own test) must not answer them here
    unthrottled = {"ec2": {"limits": {"rate_per_s": 100000, "burst": 100000}}}
    site = start_site(tmp_path_factory.mktemp("fuzz"), settings=unthrottled,
                      quotas={"instances": 5, "vcpus": 10, "memory_mb": 8192, "disk_gb": 100, "addresses": 1})
    alpha = site.client("alpha")
    alpha.create_key_pair(KeyName="fixed-key")
    running, stopped = (alpha.run_instances(ImageId=site.ami, MinCount=1, MaxCount=1, ClientToken=f"tok-{n}",
                                            KeyName="fixed-key")["Instances"][0]["InstanceId"] for n in (1, 2))
    alpha.get_waiter("instance_running").wait(InstanceIds=[running, stopped], WaiterConfig=FAST)
    alpha.stop_instances(InstanceIds=[stopped])
    alpha.get_waiter("instance_stopped").wait(InstanceIds=[stopped], WaiterConfig=FAST)
    (address,) = alpha.describe_addresses()["Addresses"]
    association = alpha.associate_address(AllocationId=address["AllocationId"], InstanceId=running)["AssociationId"]
    key_id = alpha.describe_key_pairs()["KeyPairs"][0]["KeyPairId"]
    alpha.create_tags(Resources=[running, key_id], Tags=[{"Key": "role", "Value": "fixed"}])
    group = alpha.create_security_group(GroupName="fixed-group", Description="fixed")["GroupId"]
    alpha.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    own_ami = alpha.create_image(InstanceId=stopped, Name="fixed image")["ImageId"]
    alpha.get_waiter("image_available").wait(ImageIds=[own_ami], WaiterConfig=FAST)
    (default_group,) = alpha.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
    rule = alpha.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
    attached, spare = (alpha.create_volume(AvailabilityZone="ivfarm-1-worker", Size=1)["VolumeId"] for _ in range(2))
    alpha.attach_volume(VolumeId=attached, InstanceId=running, Device="/dev/sdf")
    poll_until(lambda: alpha.describe_volumes(VolumeIds=[attached])["Volumes"][0]["Attachments"][0]["State"]
               == "attached", 30, 0.2)
    taken = alpha.create_snapshot(VolumeId=attached)["SnapshotId"]
    alpha.get_waiter("snapshot_completed").wait(SnapshotIds=[taken], WaiterConfig=FAST)
    alpha.create_placement_group(GroupName="fixed-spread", Strategy="spread")
    placement_group = alpha.describe_placement_groups()["PlacementGroups"][0]["GroupId"]
    facts = {"placement_group": placement_group, "placement_group_name": "fixed-spread", "running": running, "stopped": stopped, "key_id": key_id, "allocation": address["AllocationId"],
             "public_ip": address["PublicIp"], "association": association, "ami": site.ami, "group": group,
             "default_group": default_group["GroupId"], "own_ami": own_ami,
             "rule": rule["SecurityGroupRules"][0]["SecurityGroupRuleId"], "volume": attached, "spare": spare,
             "snapshot": taken}
    yield site, site.raw("alpha"), facts
    site.site.close()


def snapshot(client: QueryClient) -> list[bytes]:
    """What the farm's users can see of its instances, keys, addresses, tags and security groups."""
    answers = []
    for action in ("DescribeInstances", "DescribeKeyPairs", "DescribeAddresses", "DescribeTags", "DescribeImages",
                   "DescribeSecurityGroups", "DescribeVolumes", "DescribeSnapshots", "DescribePlacementGroups"):
        status, body = client.call({"Action": action})
        assert status == 200
        answers.append(_REQUEST_ID.sub(b"", body))
    return answers


def junk() -> st.SearchStrategy[str]:
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
    return st.one_of(
        text, st.just(""), st.integers(-(2**70), 2**70).map(str), st.just("x" * 70000),
        st.sampled_from(["true", "false", "TRUE", "maybe", "ami-zz", "i-zz", "i-", "key-", "eipalloc-1",
                         "ami-12345678", "i-0123456789abcdef0", "!!!", "a==", "m1.tiny", "ivfarm-1-worker",
                         "tcp", "udp", "icmp", "-1", "0.0.0.0/0", "10.0.0.0/8", "default", "sg-zz", "vol-zz",
                         "/dev/sdf", "/dev/sdz", "gp3", "io2", "ivfarm-1-service", "spread", "cluster",
                         "pg-zz"]),
        st.builds(lambda k: ids.new_id(k), st.sampled_from(["instance", "image", "keypair", "allocation",
                                                            "association", "security_group",
                                                            "security_group_rule", "volume", "snapshot",
                                                            "placement_group"])),
    )


def values(facts: dict[str, str], *names: str) -> st.SearchStrategy[str]:
    """Sensible values (the farm's real ids, names) or junk."""
    return st.one_of(st.sampled_from([facts[n] for n in names]), junk()) if names else junk()


# the parameters of Authorize/RevokeSecurityGroupIngress/Egress, both forms
RULES: dict[str, tuple[str, ...]] = {
    "GroupId": ("group",), "GroupName": (), "IpProtocol": (), "FromPort": (), "ToPort": (), "CidrIp": (),
    "SourceSecurityGroupName": (), "IpPermissions.1.IpProtocol": (), "IpPermissions.1.FromPort": (),
    "IpPermissions.1.ToPort": (), "IpPermissions.1.IpRanges.1.CidrIp": (),
    "IpPermissions.1.Groups.1.GroupId": ("default_group",),
}
# action -> {parameter: fact names its sensible values come from}, and always-invalid poisons
SPEC: dict[str, tuple[dict[str, tuple[str, ...]], list[dict[str, str]]]] = {
    "DescribeRegions": ({"RegionName.1": (), "AllRegions": ()}, [{"RegionName.1": "mars-1"}]),
    "DescribeAvailabilityZones": ({"ZoneName.1": (), "ZoneId.1": ()}, [{"ZoneName.1": "nowhere-1a"}]),
    "DescribeAccountAttributes": ({"AttributeName.1": ()}, [{"AttributeName.1": "max-unicorns"}]),
    "DescribeImages": ({"ImageId.1": ("ami",), "Owner.1": (), "ExecutableBy.1": (), "MaxResults": (),
                        "NextToken": ()}, [{"ImageId.1": "ami-zz"}, {"Owner.1": "someone"}, {"MaxResults": "0"}]),
    "DescribeInstanceTypes": ({"InstanceType.1": (), "MaxResults": (), "NextToken": ()},
                              [{"InstanceType.1": "z9.mega"}, {"MaxResults": "4"}]),
    "RunInstances": ({"ImageId": ("ami",), "InstanceType": (), "MinCount": (), "MaxCount": (), "KeyName": (),
                      "UserData": (), "ClientToken": (), "Placement.AvailabilityZone": (),
                      "TagSpecification.1.ResourceType": (), "TagSpecification.1.Tag.1.Key": (),
                      "TagSpecification.1.Tag.1.Value": (), "SecurityGroup.1": (), "SecurityGroupId.1": ("group",),
                      "SubnetId": (), "PrivateIpAddress": (), "InstanceInitiatedShutdownBehavior": (),
                      "Placement.GroupName": ("placement_group_name",), "Placement.GroupId": ("placement_group",)},
                     [{"SecurityGroupId.1": "sg-zz"}, {"SubnetId": "subnet-0123456789abcdef0"},
                      {"InstanceInitiatedShutdownBehavior": "explode"}, {"MinCount": "-1"}, {"MaxCount": "0"},
                      {"ImageId": "ami-zz"}, {"UserData": "***"},
                      {"KeyName": "no-such-key"}, {"Placement.AvailabilityZone": "nowhere-1a"},
                      {"TagSpecification.1.ResourceType": "volume"}, {"Placement.GroupName": "absent-group"},
                      {"Placement.GroupId": "pg-zz"}]),
    "CreatePlacementGroup": ({"GroupName": ("placement_group_name",), "Strategy": (), "SpreadLevel": (),
                              "TagSpecification.1.ResourceType": (), "TagSpecification.1.Tag.1.Key": (),
                              "TagSpecification.1.Tag.1.Value": ()},
                             [{"Strategy": "cluster"}, {"Strategy": "stack"}, {"SpreadLevel": "rack"},
                              {"GroupName": "fixed-spread"}, {"TagSpecification.1.ResourceType": "instance"}]),
    "DescribePlacementGroups": ({"GroupName.1": ("placement_group_name",), "GroupId.1": ("placement_group",)},
                                [{"GroupId.1": "pg-zz"}, {"GroupName.2": "absent-group"},
                                 {"GroupId.2": "pg-0123456789abcdef0"}]),
    "DeletePlacementGroup": ({"GroupName": ("placement_group_name",)}, [{"GroupName": "absent-group"}]),
    "DescribeInstances": ({"InstanceId.1": ("running", "stopped"), "InstanceId.2": ("running",),
                           "MaxResults": (), "NextToken": ()},
                          [{"InstanceId.2": "i-zz"}, {"MaxResults": "2000"}, {"NextToken": "@@"}]),
    "DescribeInstanceStatus": ({"InstanceId.1": ("running",), "IncludeAllInstances": (), "MaxResults": ()},
                               [{"InstanceId.1": "i-zz"}, {"MaxResults": "-5"}]),
    "DescribeInstanceAttribute": ({"InstanceId": ("running",), "Attribute": ()},
                                  [{"Attribute": "colour"}, {"InstanceId": "i-zz"}]),
    "StartInstances": ({"InstanceId.1": ("stopped", "running"), "InstanceId.2": ("stopped",)},
                       [{"InstanceId.2": "i-zz"}, {"InstanceId.3": "i-0123456789abcdef0"}]),
    "StopInstances": ({"InstanceId.1": ("running",), "InstanceId.2": ("stopped",), "Force": ()},
                      [{"InstanceId.2": "i-zz"}, {"InstanceId.3": "i-0123456789abcdef0"}, {"Hibernate": "true"}]),
    "RebootInstances": ({"InstanceId.1": ("running",)},
                        [{"InstanceId.2": "i-zz"}, {"InstanceId.2": "i-0123456789abcdef0"}]),
    "TerminateInstances": ({"InstanceId.1": ("running", "stopped"), "InstanceId.2": ("stopped",)},
                           [{"InstanceId.3": "i-zz"}, {"InstanceId.3": "i-0123456789abcdef0"}]),
    "GetConsoleOutput": ({"InstanceId": ("running",), "Latest": ()}, [{"InstanceId": "i-zz"}]),
    "CreateKeyPair": ({"KeyName": (), "KeyType": (), "KeyFormat": ()},
                      [{"KeyName": "fixed-key"}, {"KeyType": "dsa"}, {"KeyName": "\u00e9t\u00e9"}]),
    "ImportKeyPair": ({"KeyName": (), "PublicKeyMaterial": ()},
                      [{"PublicKeyMaterial": "!!!"},
                       {"PublicKeyMaterial": base64.b64encode(b"ssh-rsa AAAAgarbage").decode()}]),
    "DescribeKeyPairs": ({"KeyName.1": (), "KeyPairId.1": ("key_id",), "IncludePublicKey": ()},
                         [{"KeyPairId.1": "key-zz"}, {"KeyName.2": "absent-key"}]),
    "DeleteKeyPair": ({"KeyName": (), "KeyPairId": ("key_id",)},
                      [{"KeyPairId": "key-zz"}, {"KeyPairId": "key-0123456789abcdef0"}]),
    "AllocateAddress": ({"Domain": ()}, [{"Domain": "galaxy"}]),
    "DescribeAddresses": ({"PublicIp.1": ("public_ip",), "AllocationId.1": ("allocation",)},
                          [{"PublicIp.2": "not-an-ip"}, {"AllocationId.2": "eipalloc-zz"}]),
    "AssociateAddress": ({"InstanceId": ("running", "stopped"), "AllocationId": ("allocation",),
                          "PublicIp": ("public_ip",), "AllowReassociation": ()},
                         [{"InstanceId": "i-zz"}, {"AllocationId": "eipalloc-zz"}, {"PublicIp": "999.1.1.1"}]),
    "DisassociateAddress": ({"AssociationId": ("association",), "PublicIp": ("public_ip",)},
                            [{"AssociationId": "eipassoc-zz"}, {"PublicIp": "x.y"}]),
    "ReleaseAddress": ({"AllocationId": ("allocation",), "PublicIp": ("public_ip",)},
                       [{"AllocationId": "eipalloc-zz"}, {"PublicIp": "x.y"}]),
    "CreateTags": ({"ResourceId.1": ("running", "key_id", "allocation"), "Tag.1.Key": (), "Tag.1.Value": ()},
                   [{"Tag.1.Key": "aws:owner"}, {"ResourceId.2": "vol-0123456789abcdef0"}, {"Tag.2.Key": "k" * 129},
                    {"ResourceId.2": "i-zz"}]),
    "DeleteTags": ({"ResourceId.1": ("running", "key_id"), "Tag.1.Key": (), "Tag.1.Value": ()},
                   [{"ResourceId.2": "vol-0123456789abcdef0"}, {"ResourceId.2": "i-0123456789abcdef0"}]),
    "DescribeTags": ({"MaxResults": (), "NextToken": ()}, [{"MaxResults": "1"}, {"NextToken": "@@"}]),
    "CreateSecurityGroup": ({"GroupName": (), "GroupDescription": (), "VpcId": ()},
                            [{"GroupName": "sg-bad"}, {"GroupName": "fixed-group"}, {"VpcId": "vpc-zz"}]),
    "DeleteSecurityGroup": ({"GroupId": ("group", "default_group"), "GroupName": ()},
                            [{"GroupId": "sg-zz"}, {"GroupId": "sg-0123456789abcdef0"}]),
    "DescribeSecurityGroups": ({"GroupId.1": ("group",), "GroupName.1": (), "MaxResults": (), "NextToken": ()},
                               [{"GroupId.2": "sg-zz"}, {"GroupName.2": "absent-group"}, {"NextToken": "@@"}]),
    "DescribeSecurityGroupRules": ({"SecurityGroupRuleId.1": ("rule",), "MaxResults": ()},
                                   [{"SecurityGroupRuleId.2": "sgr-zz"}, {"MaxResults": "1"}]),
    "AuthorizeSecurityGroupIngress": (RULES, [{"IpPermissions.1.IpProtocol": "gre"}, {"GroupId": "sg-zz"}]),
    "AuthorizeSecurityGroupEgress": (RULES, [{"IpPermissions.1.IpProtocol": "gre"}, {"GroupId": "sg-zz"}]),
    "RevokeSecurityGroupIngress": ({**RULES, "SecurityGroupRuleId.1": ("rule",)},
                                   [{"SecurityGroupRuleId.2": "sgr-zz"}, {"GroupId": "sg-0123456789abcdef0"}]),
    "RevokeSecurityGroupEgress": ({**RULES, "SecurityGroupRuleId.1": ("rule",)},
                                  [{"IpProtocol": "gre"}, {"GroupId": "sg-zz"}]),
    "DescribeVpcs": ({"VpcId.1": ()}, [{"VpcId.1": "vpc-0123456789abcdef0"}]),
    "DescribeSubnets": ({"SubnetId.1": ()}, [{"SubnetId.1": "subnet-0123456789abcdef0"}]),
    "DescribeRouteTables": ({"RouteTableId.1": ()}, [{"RouteTableId.1": "rtb-0123456789abcdef0"}]),
    "DescribeInternetGateways": ({"InternetGatewayId.1": ()}, [{"InternetGatewayId.1": "igw-0123456789abcdef0"}]),
    "DescribeNetworkInterfaces": ({"NetworkInterfaceId.1": ()}, [{"NetworkInterfaceId.1": "eni-0123456789abcdef0"}]),
    "DescribeVpcAttribute": ({"VpcId": (), "Attribute": ()}, [{"Attribute": "colour"}, {"VpcId": "vpc-zz"}]),
    "CreateVpc": ({"CidrBlock": ()}, [{"CidrBlock": "10.0.0.0/16"}]),
    "DeleteSubnet": ({"SubnetId": ()}, [{"SubnetId": "subnet-zz"}]),
    "ModifyInstanceAttribute": ({"InstanceId": ("running", "stopped"), "GroupId.1": ("group", "default_group"),
                                 "InstanceType.Value": (), "UserData.Value": (), "DisableApiTermination.Value": (),
                                 "InstanceInitiatedShutdownBehavior.Value": (), "Attribute": (), "Value": ()},
                                [{"GroupId.1": "sg-zz"}, {"GroupId.2": "sg-0123456789abcdef0"},
                                 {"InstanceType.Value": "z9.mega", "GroupId.1": "sg-0123456789abcdef0"},
                                 {"DisableApiTermination.Value": "maybe"}, {"InstanceId": "i-zz"}]),
    "CreateImage": ({"InstanceId": ("running", "stopped"), "Name": (), "Description": (), "NoReboot": (),
                     "TagSpecification.1.ResourceType": (), "TagSpecification.1.Tag.1.Key": ()},
                    [{"Name": "x!"}, {"InstanceId": "i-zz"}, {"TagSpecification.1.ResourceType": "volume"},
                     {"BlockDeviceMapping.1.DeviceName": "/dev/sdb"}, {"Name": "fixed image"}]),
    "DeregisterImage": ({"ImageId": ("own_ami", "ami")}, [{"ImageId": "ami-zz"}, {"ImageId": "ami-0123456789abcdef0"}]),
    "DescribeImageAttribute": ({"ImageId": ("own_ami", "ami"), "Attribute": ()},
                               [{"Attribute": "colour"}, {"ImageId": "ami-zz"}]),
    "ModifyImageAttribute": ({"ImageId": ("own_ami", "ami"), "Attribute": (), "OperationType": (), "UserId.1": (),
                              "LaunchPermission.Add.1.UserId": (), "LaunchPermission.Remove.1.UserId": (),
                              "Description.Value": ()},
                             [{"LaunchPermission.Add.1.Group": "all"}, {"UserId.1": "12", "OperationType": "add"},
                              {"ImageId": "ami-zz"}, {"UserGroup.1": "everyone"}]),
    "ResetImageAttribute": ({"ImageId": ("own_ami", "ami"), "Attribute": ()},
                            [{"Attribute": "description"}, {"ImageId": "ami-zz"}]),
    "CreateVolume": ({"AvailabilityZone": (), "Size": (), "SnapshotId": ("snapshot",), "VolumeType": (),
                      "TagSpecification.1.ResourceType": (), "TagSpecification.1.Tag.1.Key": ()},
                     [{"AvailabilityZone": "nowhere-1a"}, {"Size": "0"}, {"VolumeType": "io2"}, {"Encrypted": "true"},
                      {"SnapshotId": "snap-zz"}, {"TagSpecification.1.ResourceType": "instance"}]),
    "DescribeVolumes": ({"VolumeId.1": ("volume", "spare"), "MaxResults": (), "NextToken": ()},
                        [{"VolumeId.2": "vol-zz"}, {"VolumeId.2": "vol-0123456789abcdef0"}, {"NextToken": "@@"}]),
    "DescribeVolumeStatus": ({"VolumeId.1": ("volume",), "MaxResults": ()},
                             [{"VolumeId.1": "vol-zz"}, {"MaxResults": "-1"}]),
    "DeleteVolume": ({"VolumeId": ("volume", "spare")}, [{"VolumeId": "vol-zz"}, {"VolumeId": "vol-0123456789abcdef0"}]),
    "AttachVolume": ({"VolumeId": ("volume", "spare"), "InstanceId": ("running", "stopped"), "Device": ()},
                     [{"Device": "/dev/sda"}, {"VolumeId": "vol-zz"}, {"InstanceId": "i-0123456789abcdef0"}]),
    "DetachVolume": ({"VolumeId": ("volume", "spare"), "InstanceId": ("running",), "Device": (), "Force": ()},
                     [{"VolumeId": "vol-zz"}, {"InstanceId": "i-zz"}, {"VolumeId": "vol-0123456789abcdef0"}]),
    "ModifyVolume": ({"VolumeId": ("volume", "spare"), "Size": (), "VolumeType": ()},
                     [{"Size": "0"}, {"VolumeType": "io2"}, {"VolumeId": "vol-zz"}]),
    "CreateSnapshot": ({"VolumeId": ("volume", "spare"), "Description": ()},
                       [{"VolumeId": "vol-zz"}, {"VolumeId": "vol-0123456789abcdef0"}]),
    "DescribeSnapshots": ({"SnapshotId.1": ("snapshot",), "Owner.1": (), "MaxResults": ()},
                          [{"SnapshotId.2": "snap-zz"}, {"Owner.1": "someone"}, {"MaxResults": "3"}]),
    "DeleteSnapshot": ({"SnapshotId": ("snapshot",)}, [{"SnapshotId": "snap-zz"},
                                                      {"SnapshotId": "snap-0123456789abcdef0"}]),
}
FILTERED = {"DescribeRegions", "DescribeAvailabilityZones", "DescribeImages", "DescribeInstanceTypes",
            "DescribeInstances", "DescribeInstanceStatus", "DescribeKeyPairs", "DescribeAddresses", "DescribeTags",
            "DescribeSecurityGroups", "DescribeVpcs", "DescribeSubnets", "DescribeNetworkInterfaces",
            "DescribeVolumes", "DescribeVolumeStatus", "DescribeSnapshots", "DescribePlacementGroups"}


@st.composite
def requests(draw: st.DrawFn, facts: dict[str, str]) -> dict[str, str]:
    action = draw(st.sampled_from(sorted(SPEC) + ["LaunchRocket", ""]))
    if action not in SPEC:
        return {"Action": action} if action else {}
    accepted, poisons = SPEC[action]
    params = {"Action": action}
    for name, sources in accepted.items():
        if draw(st.booleans()):
            params[name] = draw(values(facts, *sources))
    if action in FILTERED and draw(st.booleans()):
        params["Filter.1.Name"] = draw(st.sampled_from(["instance-id", "tag:role", "key-name", "bogus", "name", "size",
                                                                 "volume-id", "status", "strategy"]))
        params["Filter.1.Value.1"] = draw(junk())
    mode = draw(st.sampled_from(["dry-run", "poison", "unknown"]))
    if mode == "dry-run":
        params["DryRun"] = "true"
    elif mode == "poison":
        params.update(draw(st.sampled_from(poisons)))
    else:
        params[draw(st.sampled_from(["Bogus", "InstanceIds.1", "Filter.x.Name", "dryrun"]))] = "1"
    return params


def test_malformed_requests_get_4xx_and_change_nothing(world: Any) -> None:
    _, client, facts = world
    before = snapshot(client)

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=requests(facts))
    def check(params: dict[str, str]) -> None:
        status, body = client.call(params)
        assert 400 <= status < 500, (params, status, body[:500])
        root = ET.fromstring(body)
        assert root.tag == "Response" and root.findtext("Errors/Error/Code"), body[:500]
        assert root.findtext("RequestID")
        assert snapshot(client) == before, params

    check()
