"""Every filter name AWS documents for a Describe action served here is accepted and matches as AWS would."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from ivfarm.ec2.filter_table import TABLE
from tests.e2e.ec2_support import Ec2Site, error_code

COUNTS: dict[str, Callable[[dict[str, Any]], int]] = {
    "DescribeInstances": lambda r: sum(len(x["Instances"]) for x in r["Reservations"]),
    "DescribeInstanceStatus": lambda r: len(r["InstanceStatuses"]),
    "DescribeImages": lambda r: len(r["Images"]),
    "DescribeInstanceTypes": lambda r: len(r["InstanceTypes"]),
    "DescribeAddresses": lambda r: len(r["Addresses"]),
    "DescribeAvailabilityZones": lambda r: len(r["AvailabilityZones"]),
    "DescribeRegions": lambda r: len(r["Regions"]),
    "DescribeKeyPairs": lambda r: len(r["KeyPairs"]),
    "DescribeTags": lambda r: len(r["Tags"]),
    "DescribeVolumes": lambda r: len(r["Volumes"]),
    "DescribeVolumeStatus": lambda r: len(r["VolumeStatuses"]),
    "DescribeSnapshots": lambda r: len(r["Snapshots"]),
    "DescribePlacementGroups": lambda r: len(r["PlacementGroups"]),
}
EXTRA = {"DescribeInstanceStatus": {"IncludeAllInstances": True}}
CASES = [(action, name) for action, row in TABLE.items() for name in sorted(row.names())]


@pytest.fixture(scope="module")
def session(ec2_site: Ec2Site) -> Iterator[Any]:
    """alpha with one instance, one key pair, one tag, one volume, one snapshot and one placement group,
    all removed afterwards."""
    client = ec2_site.client("alpha")
    client.create_key_pair(KeyName="table-key")
    client.create_placement_group(GroupName="table-group", Strategy="spread")
    (instance,) = client.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                                       KeyName="table-key")["Instances"]
    client.create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": "k", "Value": "v"}])
    volume = client.create_volume(AvailabilityZone="ivfarm-1-worker", Size=1)["VolumeId"]
    snapshot = client.create_snapshot(VolumeId=volume)["SnapshotId"]
    yield client
    client.delete_snapshot(SnapshotId=snapshot)
    client.delete_volume(VolumeId=volume)
    client.terminate_instances(InstanceIds=[instance["InstanceId"]])
    client.get_waiter("instance_terminated").wait(InstanceIds=[instance["InstanceId"]],
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.delete_key_pair(KeyName="table-key")
    client.delete_placement_group(GroupName="table-group")


def count(client: Any, action: str, *filters: tuple[str, str]) -> int:
    call = getattr(client, xform_name(action))
    kwargs: dict[str, Any] = dict(EXTRA.get(action, {}))
    if filters:
        kwargs["Filters"] = [{"Name": name, "Values": [value]} for name, value in filters]
    return COUNTS[action](call(**kwargs))


def test_the_table_covers_every_implemented_describe_action() -> None:
    assert set(TABLE) == set(COUNTS)


@pytest.mark.parametrize(("action", "name"), CASES, ids=[f"{a}:{n}" for a, n in CASES])
def test_documented_filter_is_accepted(session: Any, action: str, name: str) -> None:
    row = TABLE[action]
    everything = count(session, action)
    assert everything > 0
    matched = count(session, action, (name, "*"))
    if name in row.fixed:
        assert matched == everything == count(session, action, (name, row.fixed[name]))
        assert count(session, action, (name, "not-" + row.fixed[name])) == 0
    elif name in row.absent:
        assert matched == 0
    else:
        assert 0 <= matched <= everything


@pytest.mark.parametrize(("action", "name", "value", "matches"), [
    ("DescribeInstanceTypes", "bare-metal", "false", True),
    ("DescribeInstanceTypes", "bare-metal", "true", False),
    ("DescribeInstances", "hypervisor", "xen", False),
    ("DescribeInstances", "hypervisor", "kvm", True),
    ("DescribeInstances", "spot-instance-request-id", "sir-*", False),
    ("DescribeInstances", "root-device-name", "/dev/vda", True),
    ("DescribeInstances", "monitoring-state", "disabled", True),
    ("DescribeInstanceStatus", "system-status.reachability", "passed", True),
    ("DescribeImages", "creation-date", "20*", True),
    ("DescribeVolumes", "size", "1", True),
    ("DescribeVolumes", "attachment.status", "attached", False),
    ("DescribeVolumeStatus", "volume-status.status", "ok", True),
    ("DescribeSnapshots", "storage-tier", "standard", True),
    ("DescribeSnapshots", "owner-alias", "amazon", False),
    ("DescribePlacementGroups", "strategy", "spread", True),
    ("DescribePlacementGroups", "spread-level", "rack", False),
    ("DescribePlacementGroups", "group-arn", "arn:aws:ec2:*:placement-group/table-group", True),
])
def test_filters_match_as_aws_would(session: Any, action: str, name: str, value: str, matches: bool) -> None:
    if action == "DescribeInstanceStatus":
        session.get_waiter("instance_running").wait(WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert (count(session, action, (name, value)) > 0) == matches


def test_unknown_filter_names_are_refused(session: Any) -> None:
    for action in ("DescribeInstances", "DescribeImages", "DescribeInstanceTypes"):
        with pytest.raises(ClientError) as excinfo:
            count(session, action, ("no-such-filter", "x"))
        assert error_code(excinfo) == "InvalidParameterValue"
