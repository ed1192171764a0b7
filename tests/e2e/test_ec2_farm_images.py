"""CreateImage, DeregisterImage and image sharing between farms through boto3 against ``ivfarm ec2 serve``."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ivfarm.ec2.context import account_id
from ivfarm.store.models import Image
from tests.e2e.ec2_support import Ec2Site, error_code

FAST = {"Delay": 1, "MaxAttempts": 60}


def _cleanup(client: Any) -> None:
    live = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]
    if live:
        client.terminate_instances(InstanceIds=live)
        client.get_waiter("instance_terminated").wait(InstanceIds=live, WaiterConfig=FAST)
    for image in client.describe_images(Owners=["self"])["Images"]:
        if image["State"] != "pending":
            client.deregister_image(ImageId=image["ImageId"])


@pytest.fixture
def alpha(ec2_site: Ec2Site) -> Iterator[Any]:
    """alpha's client; its instances and images are removed afterwards."""
    client = ec2_site.client("alpha")
    yield client
    _cleanup(client)


@pytest.fixture
def beta(ec2_site: Ec2Site) -> Iterator[Any]:
    client = ec2_site.client("beta")
    yield client
    _cleanup(client)


def running(client: Any, ami: str) -> str:
    iid = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny")["Instances"][0]["InstanceId"]
    client.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    return str(iid)


def test_an_image_of_a_running_instance_becomes_available_and_launches(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = running(alpha, ec2_site.ami)
    made = alpha.create_image(InstanceId=iid, Name="alpha web 1", Description="configured", NoReboot=True,
                              TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "role", "Value": "web"}]}])
    ami = made["ImageId"]
    assert ami.startswith("ami-")
    alpha.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    (image,) = alpha.describe_images(ImageIds=[ami])["Images"]
    assert image["State"] == "available" and image["Name"] == "alpha web 1"
    assert image["OwnerId"] == account_id(ec2_site.farms["alpha"].farm_id) and image["Public"] is False
    assert image["Description"] == "configured" and image["Tags"] == [{"Key": "role", "Value": "web"}]
    assert image["BlockDeviceMappings"][0]["DeviceName"] == "/dev/vda"
    with ec2_site.site.cloud.store.read() as session:
        row = session.get(Image, ami)
        path, sha = Path(row.path), row.sha256
    assert path.is_file() and len(sha) == 64 and not path.with_name(path.name + ".partial").exists()
    assert alpha.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    child = running(alpha, ami)
    assert alpha.describe_instances(InstanceIds=[child])["Reservations"][0]["Instances"][0]["ImageId"] == ami
    assert [i["ImageId"] for i in alpha.describe_images(Owners=["self"])["Images"]] == [ami]


def test_an_image_with_reboot_stops_and_starts_the_instance_again(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = running(alpha, ec2_site.ami)
    ami = alpha.create_image(InstanceId=iid, Name="alpha rebooted")["ImageId"]
    state = alpha.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("stopping", "stopped", "pending", "running")
    alpha.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    alpha.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)


def test_bad_create_image_requests_answer_aws_codes_and_make_nothing(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = running(alpha, ec2_site.ami)
    cases = [
        (dict(InstanceId="i-nope", Name="x-image"), "InvalidInstanceID.Malformed"),
        (dict(InstanceId="i-0123456789abcdef0", Name="x-image"), "InvalidInstanceID.NotFound"),
        (dict(InstanceId=iid, Name="bad*name!"), "InvalidParameterValue"),
        (dict(InstanceId=iid, Name="x-image", TagSpecifications=[{"ResourceType": "volume", "Tags": []}]),
         "InvalidParameterValue"),
    ]
    for kwargs, code in cases:
        with pytest.raises(ClientError) as caught:
            alpha.create_image(**kwargs)
        assert error_code(caught) == code, kwargs
    alpha.create_image(InstanceId=iid, Name="taken name", NoReboot=True)
    with pytest.raises(ClientError) as caught:
        alpha.create_image(InstanceId=iid, Name="taken name", NoReboot=True)
    assert error_code(caught) == "InvalidAMIName.Duplicate"
    assert [i["Name"] for i in alpha.describe_images(Owners=["self"])["Images"]] == ["taken name"]
    alpha.get_waiter("image_available").wait(Owners=["self"], WaiterConfig=FAST)
    with pytest.raises(ClientError) as caught:
        alpha.describe_images(ImageIds=["ami-bad"])
    assert error_code(caught) == "InvalidAMIID.Malformed"


def test_sharing_lets_another_farm_see_and_launch_an_image(ec2_site: Ec2Site, alpha: Any, beta: Any) -> None:
    iid = running(alpha, ec2_site.ami)
    ami = alpha.create_image(InstanceId=iid, Name="alpha shared", NoReboot=True)["ImageId"]
    alpha.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    beta_account = account_id(ec2_site.farms["beta"].farm_id)
    alpha_account = account_id(ec2_site.farms["alpha"].farm_id)
    for call in (lambda: beta.describe_images(ImageIds=[ami]),
                 lambda: beta.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny"),
                 lambda: beta.describe_image_attribute(ImageId=ami, Attribute="launchPermission")):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "InvalidAMIID.NotFound"
    assert beta.describe_images(ExecutableUsers=["self"], Owners=[alpha_account])["Images"] == []

    alpha.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": beta_account}]})
    perms = alpha.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
    assert perms == [{"UserId": beta_account}]
    assert [i["ImageId"] for i in beta.describe_images(ExecutableUsers=["self"], Owners=[alpha_account])["Images"]] == [ami]
    assert [i["ImageId"] for i in alpha.describe_images(ExecutableUsers=[beta_account], Owners=["self"])["Images"]] == [ami]
    assert beta.describe_images(Owners=["self"])["Images"] == []
    assert beta.describe_images(Owners=["aws-marketplace"])["Images"] == []
    child = running(beta, ami)
    assert beta.describe_instances(InstanceIds=[child])["Reservations"][0]["Instances"][0]["ImageId"] == ami

    for call in (lambda: beta.deregister_image(ImageId=ami),
                 lambda: beta.modify_image_attribute(ImageId=ami, Description={"Value": "mine now"})):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "InvalidAMIID.Unavailable"
    with pytest.raises(ClientError) as caught:
        alpha.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    assert error_code(caught) == "OperationNotPermitted"
    with pytest.raises(ClientError) as caught:
        alpha.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "999999999999"}]})
    assert error_code(caught) == "InvalidAMIAttributeItemValue"

    alpha.modify_image_attribute(ImageId=ami, Attribute="launchPermission", OperationType="remove",
                                 UserIds=[beta_account])
    assert alpha.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == []
    with pytest.raises(ClientError) as caught:
        beta.describe_images(ImageIds=[ami])
    assert error_code(caught) == "InvalidAMIID.NotFound"
    alpha.modify_image_attribute(ImageId=ami, Description={"Value": "new words"})
    assert alpha.describe_image_attribute(ImageId=ami, Attribute="description")["Description"] == {"Value": "new words"}


def test_deregistering_hides_the_image_and_removes_its_file_when_unused(ec2_site: Ec2Site, alpha: Any) -> None:
    iid = running(alpha, ec2_site.ami)
    ami = alpha.create_image(InstanceId=iid, Name="alpha gone", NoReboot=True)["ImageId"]
    alpha.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    with ec2_site.site.cloud.store.read() as session:
        path = Path(session.get(Image, ami).path)
    child = running(alpha, ami)
    alpha.deregister_image(ImageId=ami)
    with pytest.raises(ClientError) as caught:
        alpha.describe_images(ImageIds=[ami])
    assert error_code(caught) == "InvalidAMIID.NotFound"
    with pytest.raises(ClientError) as caught:
        alpha.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    assert error_code(caught) == "InvalidAMIID.NotFound"
    assert path.is_file()  # the instance still runs from it
    assert alpha.describe_instances(InstanceIds=[child])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    with pytest.raises(ClientError) as caught:
        alpha.deregister_image(ImageId=ec2_site.ami)
    assert error_code(caught) == "InvalidAMIID.Unavailable"
