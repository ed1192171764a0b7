"""The EC2 facade with real VMs: user-data through GetConsoleOutput, AssociateAddress from outside."""
from __future__ import annotations

import base64
import subprocess

import pytest

from ivfarm.services.farms import lifecycle
from tests.integration.ec2_server import ec2_server, farm_client
from tests.support.polling import poll_until, text_with
from tests.support.public_clients import client_namespace

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

USER_DATA = "#!/bin/sh\necho EC2-USERDATA-$((6*7))-MARKER\n"


def wait_console(client, instance_id: str, marker: str, timeout_s: float = 120) -> str:  # type: ignore[no-untyped-def]
    def output() -> str:
        return client.get_console_output(InstanceId=instance_id).get("Output", "")  # base64 decoded by botocore

    return poll_until(text_with(output, marker), timeout_s, 1,
                      lambda: f"{marker!r} not in the console output of {instance_id}:\n{output()[-2000:]}")


def test_user_data_console_output_and_elastic_ip(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns")
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="ec2vm"))
    with ec2_server(cloud) as (endpoint, _), client_namespace(cloud.public_segment, "ivtec2c", "198.51.100.201") as ns:
        client = farm_client(endpoint, farm)
        ami = next(i["ImageId"] for i in client.describe_images()["Images"] if i["Name"] == "guest")
        [instance] = client.run_instances(ImageId=ami, InstanceType="m1.tiny", MinCount=1, MaxCount=1,
                                          UserData=USER_DATA)["Instances"]
        instance_id = instance["InstanceId"]
        client.get_waiter("instance_running").wait(InstanceIds=[instance_id],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        text = wait_console(client, instance_id, "IVFARM-GUEST: ready")
        assert "EC2-USERDATA-42-MARKER" in text and f"instance-id={instance_id}" in text
        attribute = client.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        assert base64.b64decode(attribute["UserData"]["Value"]).decode() == USER_DATA

        address = client.describe_addresses()["Addresses"][0]
        url = f"http://{address['PublicIp']}/"

        def fetch() -> str:
            result = subprocess.run(["ip", "netns", "exec", ns, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url],
                                    capture_output=True, text=True, timeout=15)
            return result.stdout.strip()

        assert fetch() == ""  # not bound yet: nobody answers on the elastic IP
        client.authorize_security_group_ingress(GroupName="default", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        association = client.associate_address(AllocationId=address["AllocationId"], InstanceId=instance_id)
        assert association["AssociationId"].startswith("eipassoc-")
        assert fetch() == instance_id
        described = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        assert described["PublicIpAddress"] == address["PublicIp"]
        client.disassociate_address(AssociationId=association["AssociationId"])
        assert fetch() == ""
        client.terminate_instances(InstanceIds=[instance_id])
        client.get_waiter("instance_terminated").wait(InstanceIds=[instance_id],
                                                      WaiterConfig={"Delay": 1, "MaxAttempts": 60})
