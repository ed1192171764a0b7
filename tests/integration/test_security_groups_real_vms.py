"""Security groups enforced on real VMs' ports (libvirt nwfilter), driven through the EC2 API.

Two VMs in ``default`` reach each other and a VM in another group of the same farm does not; tcp/80
authorized from 0.0.0.0/0 makes the elastic IP answer HTTP from the public segment, and a revoke
stops that within 2 s, on the running VM; without its egress rule a VM cannot get out.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from ivfarm.services.farms import lifecycle
from tests.integration.ec2_server import ec2_server, farm_client
from tests.integration.guest import guest_exec
from tests.integration.test_ec2_real_vms import wait_console
from tests.support.polling import poll_until
from tests.support.public_clients import client_namespace

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]
CLIENT_IP = "198.51.100.202"
WEB = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def _fetch(namespace: str, url: str) -> str:
    result = subprocess.run(["ip", "netns", "exec", namespace, "timeout", "3", "busybox", "wget", "-q", "-O", "-", url],
                            capture_output=True, text=True, timeout=15)
    return result.stdout.strip()


def test_groups_allow_and_cut_traffic_live(real_cloud_factory) -> None:  # type: ignore[no-untyped-def]
    cloud = real_cloud_factory(router="netns")
    farm = lifecycle.create_farm(cloud, lifecycle.FarmRequest(name="sgvm"))
    with ec2_server(cloud) as (endpoint, _), client_namespace(cloud.public_segment, "ivtsgc", CLIENT_IP) as ns:
        client = farm_client(endpoint, farm)
        ami = next(i["ImageId"] for i in client.describe_images()["Images"] if i["Name"] == "guest")
        client.create_security_group(GroupName="apart", Description="not default")

        def run(**groups: list[str]) -> str:
            [instance] = client.run_instances(ImageId=ami, InstanceType="m1.tiny", MinCount=1, MaxCount=1,
                                              **groups)["Instances"]
            return str(instance["InstanceId"])

        a1, a2, apart = run(), run(SecurityGroups=["default"]), run(SecurityGroups=["apart"])
        client.get_waiter("instance_running").wait(InstanceIds=[a1, a2, apart],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        for instance_id in (a1, a2, apart):
            wait_console(client, instance_id, "IVFARM-GUEST: ready")
        ips = {i["InstanceId"]: i["PrivateIpAddress"]
               for r in client.describe_instances()["Reservations"] for i in r["Instances"]}

        assert guest_exec(a1, f"ping -c 1 -W 2 {ips[a2]}")[0] == 0  # default: members reach each other
        assert guest_exec(a2, f"ping -c 1 -W 2 {ips[a1]}")[0] == 0
        assert guest_exec(apart, f"ping -c 1 -W 2 {ips[a1]}")[0] != 0  # another group: no way in
        assert guest_exec(a1, f"ping -c 1 -W 2 {ips[apart]}")[0] != 0

        address = client.describe_addresses()["Addresses"][0]
        client.associate_address(AllocationId=address["AllocationId"], InstanceId=a1)
        url = f"http://{address['PublicIp']}/"
        assert _fetch(ns, url) == ""  # the elastic IP is bound, but tcp/80 is not allowed in
        client.authorize_security_group_ingress(GroupName="default", IpPermissions=WEB)
        poll_until(lambda: _fetch(ns, url) == a1, 10, 0.2, "tcp/80 authorized, yet the VM does not answer")
        client.revoke_security_group_ingress(GroupName="default", IpPermissions=WEB)
        revoked = time.monotonic()
        while True:  # the first request started after the revoke, or one within 2 s of it, gets no answer
            started = time.monotonic()
            if _fetch(ns, url) == "":
                break
            assert started - revoked < 2, "tcp/80 revoked, yet the VM still answers after 2 s"

        (default,) = client.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
        client.modify_instance_attribute(InstanceId=apart, Groups=[default["GroupId"]])
        poll_until(lambda: guest_exec(a1, f"ping -c 1 -W 2 {ips[apart]}")[0] == 0, 30, 1,
                   "moved into default, yet its members cannot reach it")

        # egress: the default group's allow-all outbound rule removed, the VM cannot reach the public segment
        outside = f"ping -c 1 -W 2 {CLIENT_IP}"
        assert guest_exec(a2, outside)[0] == 0
        everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        client.revoke_security_group_egress(GroupId=default["GroupId"], IpPermissions=everything)
        poll_until(lambda: guest_exec(a2, outside)[0] != 0, 30, 1, "egress revoked, yet the VM still gets out")
        client.authorize_security_group_egress(GroupId=default["GroupId"], IpPermissions=everything)
        poll_until(lambda: guest_exec(a2, outside)[0] == 0, 30, 1, "egress authorized again, yet the VM stays in")
        client.terminate_instances(InstanceIds=[a1, a2, apart])
        client.get_waiter("instance_terminated").wait(InstanceIds=[a1, a2, apart],
                                                      WaiterConfig={"Delay": 1, "MaxAttempts": 60})
