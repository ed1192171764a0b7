"""Placement groups (spread) through boto3 against ``ivfarm ec2 serve`` on libvirt's test driver.

The site has two worker hosts (w1, w2) and one service host (s1); besides what the API shows, the
tests read which host each instance's row was placed on.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import func, select

from ivfarm.store.models import Host, Instance, Job
from tests.e2e.ec2_support import Ec2Site, error_code

FAST = {"Delay": 1, "MaxAttempts": 60}
WORKER = "ivfarm-1-worker"


@pytest.fixture
def alpha(ec2_site: Ec2Site) -> Iterator[Any]:
    """alpha's client; the instances and placement groups a test leaves are removed afterwards."""
    client = ec2_site.client("alpha")
    yield client
    live = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]
    if live:
        client.terminate_instances(InstanceIds=live)
        client.get_waiter("instance_terminated").wait(InstanceIds=live, WaiterConfig=FAST)
    for group in client.describe_placement_groups()["PlacementGroups"]:
        client.delete_placement_group(GroupName=group["GroupName"])


def _run(client: Any, ami: str, count: int, **placement: str) -> list[str]:
    reply = client.run_instances(ImageId=ami, MinCount=count, MaxCount=count, InstanceType="m1.tiny",
                                 Placement={"AvailabilityZone": WORKER, **placement})
    return [i["InstanceId"] for i in reply["Instances"]]


def _hosts(site: Ec2Site, instance_ids: list[str]) -> list[str]:
    """The names of the hosts the store placed the instances on, in order."""
    with site.site.cloud.store.read() as session:
        return [session.get(Host, session.get(Instance, i).host_id).name for i in instance_ids]


def _made(site: Ec2Site) -> tuple[int, int]:
    """How many instance rows and jobs the store holds."""
    with site.site.cloud.store.read() as session:
        return (int(session.scalar(select(func.count()).select_from(Instance)) or 0),
                int(session.scalar(select(func.count()).select_from(Job)) or 0))


def _error(call: Any) -> str:
    with pytest.raises(ClientError) as excinfo:
        call()
    return error_code(excinfo)


def test_create_describe_and_delete(ec2_site: Ec2Site, alpha: Any) -> None:
    made = alpha.create_placement_group(GroupName="web", Strategy="spread", TagSpecifications=[
        {"ResourceType": "placement-group", "Tags": [{"Key": "tier", "Value": "front"}]}])
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 200
    alpha.create_placement_group(GroupName="db", Strategy="spread", SpreadLevel="host")
    groups = {g["GroupName"]: g for g in alpha.describe_placement_groups()["PlacementGroups"]}
    assert sorted(groups) == ["db", "web"]
    web = groups["web"]
    assert re.fullmatch(r"pg-[0-9a-f]{17}", web["GroupId"])
    assert (web["Strategy"], web["State"], web["SpreadLevel"]) == ("spread", "available", "host")
    assert web["GroupArn"].endswith(":placement-group/web")
    assert web["Tags"] == [{"Key": "tier", "Value": "front"}]
    by_id = alpha.describe_placement_groups(GroupIds=[web["GroupId"]])["PlacementGroups"]
    assert [g["GroupName"] for g in by_id] == ["web"]
    assert [g["GroupName"] for g in alpha.describe_placement_groups(GroupNames=["db"])["PlacementGroups"]] == ["db"]

    def names(name: str, *values: str) -> list[str]:
        found = alpha.describe_placement_groups(Filters=[{"Name": name, "Values": list(values)}])
        return sorted(g["GroupName"] for g in found["PlacementGroups"])

    assert names("strategy", "spread") == ["db", "web"] and names("strategy", "cluster") == []
    assert names("state", "available") == ["db", "web"]
    assert names("group-name", "w*") == ["web"]
    assert names("group-id", web["GroupId"]) == ["web"]
    assert names("tag:tier", "front") == ["web"]
    assert {t["ResourceId"] for t in alpha.describe_tags(
        Filters=[{"Name": "resource-type", "Values": ["placement-group"]}])["Tags"]} == {web["GroupId"]}
    alpha.delete_placement_group(GroupName="web")
    assert [g["GroupName"] for g in alpha.describe_placement_groups()["PlacementGroups"]] == ["db"]
    assert _error(lambda: alpha.describe_placement_groups(GroupNames=["web"])) == "InvalidPlacementGroup.Unknown"
    assert alpha.describe_tags(Filters=[{"Name": "resource-id", "Values": [web["GroupId"]]}])["Tags"] == []


def test_spread_puts_each_instance_on_its_own_host(ec2_site: Ec2Site, alpha: Any) -> None:
    alpha.create_placement_group(GroupName="pair", Strategy="spread")
    first, second = _run(alpha, ec2_site.ami, 2, GroupName="pair")
    assert sorted(_hosts(ec2_site, [first, second])) == ["w1", "w2"]
    alpha.get_waiter("instance_running").wait(InstanceIds=[first, second], WaiterConfig=FAST)
    shown = [i for r in alpha.describe_instances(InstanceIds=[first, second])["Reservations"] for i in r["Instances"]]
    assert {i["Placement"]["GroupName"] for i in shown} == {"pair"}
    found = alpha.describe_instances(Filters=[{"Name": "placement-group-name", "Values": ["pair"]}])
    assert sorted(i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]) == sorted([first, second])

    # a third member has no host of its own left in the 2-host worker class: nothing is made
    before = _made(ec2_site)
    group_id = alpha.describe_placement_groups(GroupNames=["pair"])["PlacementGroups"][0]["GroupId"]
    assert _error(lambda: _run(alpha, ec2_site.ami, 1, GroupId=group_id)) == "InsufficientInstanceCapacity"
    assert _made(ec2_site) == before
    # outside the group the same request fits (w1 and w2 have room)
    (free,) = _run(alpha, ec2_site.ami, 1)
    assert _hosts(ec2_site, [free])[0] in ("w1", "w2")

    assert _error(lambda: alpha.delete_placement_group(GroupName="pair")) == "InvalidPlacementGroup.InUse"
    alpha.stop_instances(InstanceIds=[first])  # a stopped member still holds its host and the group
    alpha.get_waiter("instance_stopped").wait(InstanceIds=[first], WaiterConfig=FAST)
    assert _error(lambda: alpha.delete_placement_group(GroupName="pair")) == "InvalidPlacementGroup.InUse"
    assert _error(lambda: _run(alpha, ec2_site.ami, 1, GroupName="pair")) == "InsufficientInstanceCapacity"
    alpha.terminate_instances(InstanceIds=[first])
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[first], WaiterConfig=FAST)
    (third,) = _run(alpha, ec2_site.ami, 1, GroupName="pair")  # the terminated member's host is free again
    assert _hosts(ec2_site, [third]) == _hosts(ec2_site, [first])
    alpha.terminate_instances(InstanceIds=[second, third])
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[second, third], WaiterConfig=FAST)
    alpha.delete_placement_group(GroupName="pair")
    assert alpha.describe_placement_groups()["PlacementGroups"] == []


def test_a_batch_larger_than_the_class_fails_whole(ec2_site: Ec2Site, alpha: Any) -> None:
    alpha.create_placement_group(GroupName="trio", Strategy="spread")
    before = _made(ec2_site)
    assert _error(lambda: _run(alpha, ec2_site.ami, 3, GroupName="trio")) == "InsufficientInstanceCapacity"
    assert _made(ec2_site) == before
    (service,) = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                                     Placement={"AvailabilityZone": "ivfarm-1-service",
                                                "GroupName": "trio"})["Instances"]
    assert _hosts(ec2_site, [service["InstanceId"]]) == ["s1"]
    assert _error(lambda: alpha.run_instances(
        ImageId=ec2_site.ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny",
        Placement={"AvailabilityZone": "ivfarm-1-service", "GroupName": "trio"})) == "InsufficientInstanceCapacity"


def test_bad_requests_get_aws_errors_and_make_nothing(ec2_site: Ec2Site, alpha: Any) -> None:
    alpha.create_placement_group(GroupName="only", Strategy="spread")
    assert _error(lambda: alpha.create_placement_group(GroupName="only", Strategy="spread")) == \
        "InvalidPlacementGroup.Duplicate"
    for strategy in ("cluster", "partition", "stack"):
        assert _error(lambda s=strategy: alpha.create_placement_group(GroupName="other", Strategy=s)) == \
            "InvalidParameterValue"
    assert _error(lambda: alpha.create_placement_group(GroupName="other", Strategy="spread", SpreadLevel="rack")) == \
        "InvalidParameterValue"
    assert _error(lambda: alpha.create_placement_group(GroupName="other", Strategy="spread", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}])) == "InvalidParameterValue"
    assert _error(lambda: alpha.create_placement_group(GroupName="other", Strategy="spread", DryRun=True)) == \
        "DryRunOperation"
    assert [g["GroupName"] for g in alpha.describe_placement_groups()["PlacementGroups"]] == ["only"]
    assert _error(lambda: alpha.describe_placement_groups(GroupNames=["absent"])) == "InvalidPlacementGroup.Unknown"
    assert _error(lambda: alpha.describe_placement_groups(GroupIds=["pg-0123456789abcdef0"])) == \
        "InvalidPlacementGroup.Unknown"
    assert _error(lambda: alpha.describe_placement_groups(GroupIds=["pg-zz"])) == "InvalidPlacementGroupId.Malformed"
    assert _error(lambda: alpha.describe_placement_groups(Filters=[{"Name": "colour", "Values": ["x"]}])) == \
        "InvalidParameterValue"
    assert _error(lambda: alpha.delete_placement_group(GroupName="absent")) == "InvalidPlacementGroup.Unknown"
    before = _made(ec2_site)
    assert _error(lambda: _run(alpha, ec2_site.ami, 1, GroupName="absent")) == "InvalidPlacementGroup.Unknown"
    assert _error(lambda: _run(alpha, ec2_site.ami, 1, GroupId="pg-zz")) == "InvalidPlacementGroupId.Malformed"
    group_id = alpha.describe_placement_groups()["PlacementGroups"][0]["GroupId"]
    assert _error(lambda: _run(alpha, ec2_site.ami, 1, GroupName="only", GroupId=group_id)) == \
        "InvalidParameterCombination"
    assert _made(ec2_site) == before
