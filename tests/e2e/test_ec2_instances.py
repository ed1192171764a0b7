"""RunInstances and the instance lifecycle through real boto3 against ``ivfarm ec2 serve``."""
from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ivfarm.services.farms.lifecycle import find_farm
from tests.e2e.ec2_support import Ec2Site, error_code
from tests.support.polling import poll_until

FAST = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture
def alpha(ec2_site: Ec2Site) -> Iterator[Any]:
    """alpha's boto3 client; every instance the test leaves behind is terminated afterwards."""
    client = ec2_site.client("alpha")
    yield client
    live = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]
    if live:
        client.terminate_instances(InstanceIds=live)
        client.get_waiter("instance_terminated").wait(InstanceIds=live, WaiterConfig=FAST)


def run(client: Any, ami: str, count: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    kwargs.setdefault("InstanceType", "m1.tiny")
    return client.run_instances(ImageId=ami, MinCount=count, MaxCount=count, **kwargs)["Instances"]


def describe(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return [i for r in client.describe_instances(**kwargs)["Reservations"] for i in r["Instances"]]


def test_lifecycle_follows_ec2_states_and_waiters(ec2_site: Ec2Site, alpha: Any) -> None:
    (instance,) = run(alpha, ec2_site.ami)
    iid = instance["InstanceId"]
    assert instance["State"] == {"Code": 0, "Name": "pending"}
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    (shown,) = describe(alpha, InstanceIds=[iid])
    with ec2_site.site.cloud.store.read() as session:
        cidr = session.merge(find_farm(ec2_site.site.cloud, "alpha")).cidr
    assert shown["State"]["Name"] == "running"
    assert ipaddress.IPv4Address(shown["PrivateIpAddress"]) in ipaddress.IPv4Network(cidr)
    assert shown["Placement"]["AvailabilityZone"] == "ivfarm-1-worker"
    assert shown["InstanceType"] == "m1.tiny" and shown["ImageId"] == ec2_site.ami

    stopping = alpha.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert (stopping["PreviousState"]["Name"], stopping["CurrentState"]["Name"]) == ("running", "stopping")
    alpha.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    alpha.start_instances(InstanceIds=[iid])
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    assert alpha.reboot_instances(InstanceIds=[iid])["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert describe(alpha, InstanceIds=[iid])[0]["State"]["Name"] == "running"

    ending = alpha.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert ending["CurrentState"]["Name"] == "shutting-down"
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
    (gone,) = describe(alpha, InstanceIds=[iid])
    assert gone["State"] == {"Code": 48, "Name": "terminated"}  # still visible for a while
    again = alpha.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert again["CurrentState"]["Name"] == "terminated"


def test_state_rules_are_checked_before_anything_changes(ec2_site: Ec2Site, alpha: Any) -> None:
    running, stopped = (i["InstanceId"] for i in run(alpha, ec2_site.ami) + run(alpha, ec2_site.ami))
    alpha.get_waiter("instance_running").wait(InstanceIds=[running, stopped], WaiterConfig=FAST)
    alpha.stop_instances(InstanceIds=[stopped])
    alpha.get_waiter("instance_stopped").wait(InstanceIds=[stopped], WaiterConfig=FAST)
    with pytest.raises(ClientError) as excinfo:
        alpha.reboot_instances(InstanceIds=[running, stopped])
    assert error_code(excinfo) == "IncorrectInstanceState"
    with pytest.raises(ClientError) as excinfo:
        alpha.stop_instances(InstanceIds=[running, "i-0123456789abcdef0"])
    assert error_code(excinfo) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as excinfo:
        alpha.terminate_instances(InstanceIds=[running, "i-nothex"])
    assert error_code(excinfo) == "InvalidInstanceID.Malformed"
    states = {i["InstanceId"]: i["State"]["Name"] for i in describe(alpha, InstanceIds=[running, stopped])}
    assert states == {running: "running", stopped: "stopped"}


def test_several_instances_share_one_reservation(ec2_site: Ec2Site, alpha: Any) -> None:
    reply = alpha.run_instances(ImageId=ec2_site.ami, MinCount=2, MaxCount=3, InstanceType="m1.tiny")
    assert [i["AmiLaunchIndex"] for i in reply["Instances"]] == [0, 1, 2]
    ids = [i["InstanceId"] for i in reply["Instances"]]
    alpha.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)
    (reservation,) = alpha.describe_instances(InstanceIds=ids)["Reservations"]
    assert reservation["ReservationId"] == reply["ReservationId"]
    assert len({i["PrivateIpAddress"] for i in reservation["Instances"]}) == 3


def test_service_zone_places_on_service_hosts(ec2_site: Ec2Site, alpha: Any) -> None:
    zones = {z["ZoneName"]: z["State"] for z in alpha.describe_availability_zones()["AvailabilityZones"]}
    assert zones == {"ivfarm-1-worker": "available", "ivfarm-1-service": "available"}
    (instance,) = run(alpha, ec2_site.ami, Placement={"AvailabilityZone": "ivfarm-1-service"})
    assert instance["Placement"]["AvailabilityZone"] == "ivfarm-1-service"
    with ec2_site.site.cloud.store.read() as session:
        from ivfarm.store.models import Host, Instance

        host = session.get(Host, session.get(Instance, instance["InstanceId"]).host_id)
        assert host.host_class == "service"
    with pytest.raises(ClientError) as excinfo:
        run(alpha, ec2_site.ami, Placement={"AvailabilityZone": "us-east-1a"})
    assert error_code(excinfo) == "InvalidParameterValue"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"ImageId": "ami-12345678"}, "InvalidAMIID.NotFound"),
    ({"ImageId": "base"}, "InvalidAMIID.Malformed"),
    ({"InstanceType": "t2.micro"}, "InvalidParameterValue"),
    ({"KeyName": "nobody"}, "InvalidKeyPair.NotFound"),
    ({"MinCount": 3, "MaxCount": 2}, "InvalidParameterValue"),
    ({"MinCount": 0, "MaxCount": 1}, "InvalidParameterValue"),
    ({"MinCount": 41, "MaxCount": 41}, "InstanceLimitExceeded"),
    ({"TagSpecifications": [{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}]},
     "InvalidParameterValue"),
])
def test_run_instances_errors_change_nothing(ec2_site: Ec2Site, alpha: Any, kwargs: dict[str, Any], code: str) -> None:
    before = describe(alpha)
    params = {"ImageId": ec2_site.ami, "MinCount": 1, "MaxCount": 1, "InstanceType": "m1.tiny", **kwargs}
    with pytest.raises(ClientError) as excinfo:
        alpha.run_instances(**params)
    assert error_code(excinfo) == code
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert describe(alpha) == before


def test_invalid_user_data_is_refused(ec2_site: Ec2Site) -> None:
    raw = ec2_site.raw("alpha")
    status, body = raw.call({"Action": "RunInstances", "ImageId": ec2_site.ami, "MinCount": "1", "MaxCount": "1",
                             "UserData": "not base64!"})
    assert status == 400 and b"<Code>InvalidParameterValue</Code>" in body and b"BASE64" in body


def test_no_room_answers_insufficient_capacity(ec2_site: Ec2Site) -> None:
    site = ec2_site.site
    keys = site.add_farm("gamma", instances=100, vcpus=1000, memory_mb=10**7, disk_gb=10**6)
    ec2_site.farms["gamma"] = keys
    gamma = ec2_site.client("gamma")
    with pytest.raises(ClientError) as excinfo:
        gamma.run_instances(ImageId=ec2_site.ami, MinCount=9, MaxCount=9, InstanceType="m1.xlarge")
    assert error_code(excinfo) == "InsufficientInstanceCapacity"
    assert describe(gamma) == []


def test_user_data_and_attributes(ec2_site: Ec2Site, alpha: Any) -> None:
    script = "#!/bin/sh\necho ivfarm-user-data\n"
    (instance,) = run(alpha, ec2_site.ami, UserData=script)
    iid = instance["InstanceId"]
    data = alpha.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    assert base64.b64decode(data).decode() == script
    kind = alpha.describe_instance_attribute(InstanceId=iid, Attribute="instanceType")["InstanceType"]["Value"]
    assert kind == "m1.tiny"
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_instance_attribute(InstanceId=iid, Attribute="colour")
    assert error_code(excinfo) == "InvalidParameterValue"


def test_client_token_makes_run_idempotent(ec2_site: Ec2Site, alpha: Any) -> None:
    first = run(alpha, ec2_site.ami, ClientToken="token-1")
    second = run(alpha, ec2_site.ami, ClientToken="token-1")
    assert [i["InstanceId"] for i in first] == [i["InstanceId"] for i in second]
    assert len(describe(alpha, Filters=[{"Name": "client-token", "Values": ["token-1"]}])) == 1
    with pytest.raises(ClientError) as excinfo:
        run(alpha, ec2_site.ami, ClientToken="token-1", InstanceType="m1.small")
    assert error_code(excinfo) == "IdempotentParameterMismatch"


def test_dry_run_checks_and_changes_nothing(ec2_site: Ec2Site, alpha: Any) -> None:
    (instance,) = run(alpha, ec2_site.ami)
    iid = instance["InstanceId"]
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    before = describe(alpha)
    calls = [
        lambda: alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1, DryRun=True),
        lambda: alpha.terminate_instances(InstanceIds=[iid], DryRun=True),
        lambda: alpha.stop_instances(InstanceIds=[iid], DryRun=True),
        lambda: alpha.create_key_pair(KeyName="dry", DryRun=True),
        lambda: alpha.create_tags(Resources=[iid], Tags=[{"Key": "k", "Value": "v"}], DryRun=True),
        lambda: alpha.describe_instances(DryRun=True),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "DryRunOperation"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert describe(alpha) == before
    assert alpha.describe_key_pairs()["KeyPairs"] == []
    with pytest.raises(ClientError) as excinfo:  # a bad parameter is reported, not DryRunOperation
        alpha.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1, DryRun=True)
    assert error_code(excinfo) == "InvalidAMIID.NotFound"


def test_filters_select_instances(ec2_site: Ec2Site, alpha: Any) -> None:
    def tagged(role: str) -> list[dict[str, Any]]:
        return [{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": role}, {"Key": "Name", "Value": role}]}]

    web = run(alpha, ec2_site.ami, TagSpecifications=tagged("web")) + run(alpha, ec2_site.ami, TagSpecifications=tagged("web"))
    db = run(alpha, ec2_site.ami, 1, InstanceType="m1.small", TagSpecifications=tagged("db"))
    web_ids = sorted(i["InstanceId"] for i in web)

    def ids(*filters: dict[str, Any]) -> list[str]:
        return sorted(i["InstanceId"] for i in describe(alpha, Filters=list(filters)))

    assert ids({"Name": "tag:role", "Values": ["web"]}) == web_ids
    assert ids({"Name": "tag:role", "Values": ["w*"]}) == web_ids
    assert ids({"Name": "tag-key", "Values": ["role"]}) == sorted(web_ids + [db[0]["InstanceId"]])
    assert ids({"Name": "instance-type", "Values": ["m1.small"]}) == [db[0]["InstanceId"]]
    assert ids({"Name": "private-ip-address", "Values": [db[0]["PrivateIpAddress"]]}) == [db[0]["InstanceId"]]
    assert ids({"Name": "tag:role", "Values": ["web", "db"]},
               {"Name": "instance-type", "Values": ["m1.tiny"]}) == web_ids
    assert ids({"Name": "image-id", "Values": ["ami-00000000"]}) == []
    alpha.get_waiter("instance_running").wait(InstanceIds=web_ids, WaiterConfig=FAST)
    assert set(web_ids) <= set(ids({"Name": "instance-state-name", "Values": ["running"]}))
    assert set(web_ids) <= set(ids({"Name": "availability-zone", "Values": ["ivfarm-1-worker"]}))
    with pytest.raises(ClientError) as excinfo:
        describe(alpha, Filters=[{"Name": "colour", "Values": ["red"]}])
    assert error_code(excinfo) == "InvalidParameterValue"


def test_describe_instances_pages(ec2_site: Ec2Site, alpha: Any) -> None:
    launched = {i["InstanceId"] for n in range(7) for i in run(alpha, ec2_site.ami)}
    pages = list(alpha.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) >= 2
    seen = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    assert len(seen) == len(set(seen)) and launched <= set(seen)
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_instances(InstanceIds=sorted(launched)[:1], MaxResults=5)
    assert error_code(excinfo) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_instances(MaxResults=5, NextToken="garbage")
    assert error_code(excinfo) == "InvalidPaginationToken"


def test_instance_status(ec2_site: Ec2Site, alpha: Any) -> None:
    up, down = (i["InstanceId"] for i in run(alpha, ec2_site.ami) + run(alpha, ec2_site.ami))
    alpha.get_waiter("instance_running").wait(InstanceIds=[up, down], WaiterConfig=FAST)
    alpha.stop_instances(InstanceIds=[down])
    alpha.get_waiter("instance_stopped").wait(InstanceIds=[down], WaiterConfig=FAST)
    alpha.get_waiter("instance_status_ok").wait(InstanceIds=[up], WaiterConfig=FAST)
    default = {s["InstanceId"] for s in alpha.describe_instance_status(InstanceIds=[up, down])["InstanceStatuses"]}
    assert default == {up}
    every = alpha.describe_instance_status(InstanceIds=[up, down], IncludeAllInstances=True)["InstanceStatuses"]
    assert {s["InstanceId"]: s["InstanceState"]["Name"] for s in every} == {up: "running", down: "stopped"}


def test_console_output_is_the_serial_log(ec2_site: Ec2Site, alpha: Any) -> None:
    (instance,) = run(alpha, ec2_site.ami)
    iid = instance["InstanceId"]
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    assert alpha.get_console_output(InstanceId=iid).get("Output", "") == ""
    log = ec2_site.site.cloud.consoles.directory / f"{iid}.log"
    log.write_bytes(b"Linux version 6.1\r\nivfarm login: ")
    output = alpha.get_console_output(InstanceId=iid)["Output"]
    assert "ivfarm login:" in output  # boto3 decodes the base64 answer


def test_terminated_instances_disappear_after_the_window(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.e2e.ec2_support import start_site

    short = start_site(tmp_path_factory.mktemp("short"), settings={"ec2": {"terminated_visible_s": 2}})
    try:
        client = short.client("alpha")
        (instance,) = run(client, short.ami)
        iid = instance["InstanceId"]
        client.terminate_instances(InstanceIds=[iid])
        client.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)

        def gone() -> bool:
            try:
                client.describe_instances(InstanceIds=[iid])
            except ClientError as exc:
                return exc.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
            return False

        poll_until(gone, 10, 0.1)
        assert describe(client) == []
    finally:
        short.site.close()
