"""ModifyInstanceAttribute / DescribeInstanceAttribute and DisableApiTermination through boto3."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.ec2_support import Ec2Site, error_code
from tests.support.localsite import FarmKeys

FAST = {"Delay": 1, "MaxAttempts": 60}


def _cleanup(client: Any) -> None:
    live = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]
    for iid in live:
        client.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})
    if live:
        client.terminate_instances(InstanceIds=live)
        client.get_waiter("instance_terminated").wait(InstanceIds=live, WaiterConfig=FAST)


@pytest.fixture
def alpha(ec2_site: Ec2Site) -> Iterator[Any]:
    client = ec2_site.client("alpha")
    yield client
    _cleanup(client)


def launch(client: Any, ami: str, **kwargs: Any) -> str:
    kwargs.setdefault("InstanceType", "m1.tiny")
    iid = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1, **kwargs)["Instances"][0]["InstanceId"]
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    return str(iid)


def stopped(client: Any, ami: str, **kwargs: Any) -> str:
    iid = launch(client, ami, **kwargs)
    client.stop_instances(InstanceIds=[iid])
    client.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    return iid


def attribute(client: Any, iid: str, name: str) -> Any:
    answer = client.describe_instance_attribute(InstanceId=iid, Attribute=name)
    return answer[name[0].upper() + name[1:]]


def instance(client: Any, iid: str) -> dict[str, Any]:
    return client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]  # type: ignore[no-any-return]


def test_a_stopped_instance_is_resized_and_starts_with_the_new_type(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = stopped(alpha, ec2_site.ami)
    alpha.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.small"})
    assert attribute(alpha, iid, "instanceType") == {"Value": "m1.small"}
    alpha.start_instances(InstanceIds=[iid])
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    assert instance(alpha, iid)["InstanceType"] == "m1.small"
    with pytest.raises(ClientError) as caught:
        alpha.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.medium"})
    assert error_code(caught) == "IncorrectInstanceState"
    assert instance(alpha, iid)["InstanceType"] == "m1.small"


def test_user_data_and_shutdown_behavior_change(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = stopped(alpha, ec2_site.ami, UserData="#!/bin/sh\necho one\n")
    alpha.modify_instance_attribute(InstanceId=iid, UserData={"Value": b"#!/bin/sh\necho two\n"})
    assert base64.b64decode(attribute(alpha, iid, "userData")["Value"]) == b"#!/bin/sh\necho two\n"
    alpha.modify_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior", Value="terminate")
    assert attribute(alpha, iid, "instanceInitiatedShutdownBehavior") == {"Value": "terminate"}
    alpha.start_instances(InstanceIds=[iid])
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    with pytest.raises(ClientError) as caught:
        alpha.modify_instance_attribute(InstanceId=iid, UserData={"Value": b"three"})
    assert error_code(caught) == "IncorrectInstanceState"
    assert base64.b64decode(attribute(alpha, iid, "userData")["Value"]) == b"#!/bin/sh\necho two\n"
    assert attribute(alpha, iid, "rootDeviceName") == {"Value": "/dev/vda"}
    mapping = alpha.describe_instance_attribute(InstanceId=iid, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
    assert mapping[0]["DeviceName"] == "/dev/vda"


def test_termination_protection_refuses_terminate_until_lifted(ec2_site: Ec2Site, alpha: Any) -> None:
    protected = launch(alpha, ec2_site.ami, DisableApiTermination=True)
    free = launch(alpha, ec2_site.ami)
    assert attribute(alpha, protected, "disableApiTermination") == {"Value": True}
    with pytest.raises(ClientError) as caught:
        alpha.terminate_instances(InstanceIds=[free, protected])
    assert error_code(caught) == "OperationNotPermitted"
    assert instance(alpha, free)["State"]["Name"] == "running"  # nothing changed
    alpha.modify_instance_attribute(InstanceId=protected, DisableApiTermination={"Value": False})
    alpha.terminate_instances(InstanceIds=[free, protected])
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[free, protected], WaiterConfig=FAST)


def test_bad_attribute_changes_answer_aws_codes_and_change_nothing(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = stopped(alpha, ec2_site.ami)
    raw = ec2_site.raw("alpha")
    cases = [
        ({"InstanceType.Value": "m9.huge"}, "InvalidInstanceAttributeValue"),
        ({"InstanceType.Value": "m1.small", "DisableApiTermination.Value": "true"}, "InvalidParameterCombination"),
        ({"InstanceInitiatedShutdownBehavior.Value": "explode"}, "InvalidParameterValue"),
        ({"DisableApiTermination.Value": "maybe"}, "InvalidParameterValue"),
        ({"UserData.Value": "not base64!"}, "InvalidParameterValue"),
        ({"SourceDestCheck.Value": "false"}, "UnsupportedOperation"),
        ({}, "MissingParameter"),
    ]
    for params, code in cases:
        status, body = raw.call({"Action": "ModifyInstanceAttribute", "InstanceId": iid, **params})
        assert status == 400 and f"<Code>{code}</Code>".encode() in body, (params, body)
    assert attribute(alpha, iid, "instanceType") == {"Value": "m1.tiny"}
    assert attribute(alpha, iid, "disableApiTermination") == {"Value": False}


def test_a_resize_over_the_farm_quota_is_refused(ec2_site: Ec2Site) -> None:
    keys: FarmKeys = ec2_site.site.add_farm("gamma", instances=2, vcpus=2, memory_mb=4096, disk_gb=100, addresses=1)
    ec2_site.farms["gamma"] = keys
    gamma = ec2_site.client("gamma")
    try:
        iid = stopped(gamma, ec2_site.ami)
        with pytest.raises(ClientError) as caught:
            gamma.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.large"})
        assert error_code(caught) == "InstanceLimitExceeded"
        assert attribute(gamma, iid, "instanceType") == {"Value": "m1.tiny"}
    finally:
        _cleanup(gamma)
