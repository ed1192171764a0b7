"""Whole farm-user sessions (security groups included) through boto 2 and Apache Libcloud's EC2 and Eucalyptus drivers.

Each client talks to ``ivfarm ec2 serve`` on 127.0.0.1 as it would to any private cloud: boto 2
signs SigV4 with a scope derived from the host name (region ``0``, service ``127``), Libcloud's EC2
driver signs SigV4 for ``us-east-1`` and sends zero-based lists, its Eucalyptus driver signs SigV2
on ``/services/Eucalyptus``.
"""
from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from boto.ec2.connection import EC2Connection
from boto.ec2.regioninfo import RegionInfo
from boto.exception import EC2ResponseError
from libcloud.compute.base import NodeDriver, NodeImage, NodeSize
from libcloud.compute.drivers.ec2 import EC2NodeDriver, EucNodeDriver
from libcloud.compute.types import NodeState

from tests.e2e.ec2_support import Ec2Site
from tests.support.polling import poll_until

USER_DATA = "#!/bin/sh\necho hello from the client test\n"
CONSOLE = b"Linux version 6.1\r\nivfarm login: "


@pytest.fixture
def cleanup(ec2_site: Ec2Site) -> Iterator[None]:
    """Terminate alpha's instances, release extra addresses, delete key pairs and groups the test leaves."""
    yield
    client = ec2_site.client("alpha")
    live = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]
    if live:
        client.terminate_instances(InstanceIds=live)
        client.get_waiter("instance_terminated").wait(InstanceIds=live, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    for address in client.describe_addresses()["Addresses"][1:]:  # the first is the farm's own
        if "AssociationId" in address:
            client.disassociate_address(AssociationId=address["AssociationId"])
        client.release_address(AllocationId=address["AllocationId"])
    for key in client.describe_key_pairs()["KeyPairs"]:
        client.delete_key_pair(KeyName=key["KeyName"])
    for group in client.describe_security_groups()["SecurityGroups"]:
        if group["GroupName"] != "default":
            client.delete_security_group(GroupId=group["GroupId"])


def boto2(ec2_site: Ec2Site, farm: str = "alpha") -> EC2Connection:
    """boto 2's EC2Connection on the server's loopback host and port."""
    url = urllib.parse.urlsplit(ec2_site.endpoint)
    keys = ec2_site.farms[farm]
    region = RegionInfo(name=ec2_site.site.region, endpoint=url.hostname)
    return EC2Connection(keys.access_key, keys.secret_key, is_secure=False, port=url.port, region=region)


def test_boto2_session(ec2_site: Ec2Site, cleanup: None) -> None:
    conn = boto2(ec2_site)
    key = conn.create_key_pair("boto2-key")
    assert "PRIVATE KEY" in key.material
    assert [k.name for k in conn.get_all_key_pairs(keynames=["boto2-key"])] == ["boto2-key"]

    group = conn.create_security_group("boto2-web", "web servers")
    assert conn.authorize_security_group(group_name="boto2-web", ip_protocol="tcp", from_port=80, to_port=80,
                                         cidr_ip="0.0.0.0/0")
    (listed,) = conn.get_all_security_groups(groupnames=["boto2-web"])
    assert listed.id == group.id
    assert [(r.ip_protocol, r.from_port, r.to_port, [str(g) for g in r.grants]) for r in listed.rules] == [
        ("tcp", "80", "80", ["0.0.0.0/0"])]

    reservation = conn.run_instances(ec2_site.ami, key_name="boto2-key", user_data=USER_DATA,
                                     instance_type="m1.tiny", security_groups=["boto2-web"])
    (instance,) = reservation.instances
    poll_until(lambda: instance.update() == "running", timeout_s=60)
    assert [g.name for g in instance.groups] == ["boto2-web"]
    with pytest.raises(EC2ResponseError) as in_use:
        conn.delete_security_group("boto2-web")
    assert in_use.value.error_code == "DependencyViolation"
    assert conn.revoke_security_group(group_name="boto2-web", ip_protocol="tcp", from_port=80, to_port=80,
                                      cidr_ip="0.0.0.0/0")
    assert conn.get_all_security_groups(groupnames=["boto2-web"])[0].rules == []
    assert instance.key_name == "boto2-key" and instance.private_ip_address
    user_data = conn.get_instance_attribute(instance.id, "userData")["userData"]
    assert base64.b64decode(user_data).decode() == USER_DATA

    conn.create_tags([instance.id], {"role": "boto2", "Name": "b2"})
    tagged = conn.get_only_instances(filters={"tag:role": "boto2"})
    assert [i.id for i in tagged] == [instance.id] and tagged[0].tags == {"role": "boto2", "Name": "b2"}
    assert conn.get_only_instances(filters={"tag:role": "other"}) == []
    assert {t.name for t in conn.get_all_tags(filters={"resource-id": instance.id})} == {"role", "Name"}

    address = conn.allocate_address(domain="vpc")
    assert conn.associate_address(instance_id=instance.id, allocation_id=address.allocation_id)
    (bound,) = conn.get_all_addresses(allocation_ids=[address.allocation_id])
    assert bound.instance_id == instance.id
    assert conn.get_only_instances([instance.id])[0].ip_address == address.public_ip
    assert conn.disassociate_address(association_id=bound.association_id)
    assert conn.release_address(allocation_id=address.allocation_id)

    (ec2_site.site.cloud.consoles.directory / f"{instance.id}.log").write_bytes(CONSOLE)
    assert b"ivfarm login:" in conn.get_console_output(instance.id).output

    conn.stop_instances([instance.id])
    poll_until(lambda: instance.update() == "stopped", timeout_s=60)
    conn.start_instances([instance.id])
    poll_until(lambda: instance.update() == "running", timeout_s=60)
    conn.terminate_instances([instance.id])
    poll_until(lambda: instance.update() == "terminated", timeout_s=60)
    assert conn.delete_key_pair("boto2-key")
    assert conn.delete_security_group("boto2-web")


def test_boto2_errors_are_ec2_errors(ec2_site: Ec2Site) -> None:
    with pytest.raises(EC2ResponseError) as excinfo:
        boto2(ec2_site).get_all_instances(["i-0123456789abcdef0"])
    assert excinfo.value.error_code == "InvalidInstanceID.NotFound"
    keys = ec2_site.farms["alpha"]
    url = urllib.parse.urlsplit(ec2_site.endpoint)
    wrong = EC2Connection(keys.access_key, "x" * 40, is_secure=False, port=url.port,
                          region=RegionInfo(name="r", endpoint=url.hostname))
    with pytest.raises(EC2ResponseError) as excinfo:
        wrong.get_all_instances()
    assert excinfo.value.error_code == "AuthFailure"


def ec2_driver(ec2_site: Ec2Site) -> NodeDriver:
    url = urllib.parse.urlsplit(ec2_site.endpoint)
    keys = ec2_site.farms["alpha"]
    return EC2NodeDriver(keys.access_key, keys.secret_key, secure=False, host=url.hostname, port=url.port,
                         region="us-east-1", signature_version="4")


def euca_driver(ec2_site: Ec2Site) -> NodeDriver:
    url = urllib.parse.urlsplit(ec2_site.endpoint)
    keys = ec2_site.farms["alpha"]
    return EucNodeDriver(keys.access_key, keys.secret_key, secure=False, host=url.hostname, port=url.port)


def _status(driver: Any, node_id: str) -> str:
    """The EC2 state name (the Eucalyptus driver maps ``stopped`` to UNKNOWN, so not ``node.state``)."""
    return str(next(n.extra["status"] for n in driver.list_nodes(ex_node_ids=[node_id])))


@pytest.mark.parametrize("make_driver", [ec2_driver, euca_driver], ids=["ec2", "eucalyptus"])
def test_libcloud_session(ec2_site: Ec2Site, cleanup: None, make_driver: Callable[[Ec2Site], Any]) -> None:
    driver = make_driver(ec2_site)
    key = driver.create_key_pair("lc-key")
    assert "PRIVATE KEY" in key.private_key
    assert driver.get_key_pair("lc-key").name == "lc-key"  # KeyName without an index

    group_name = f"lc-web-{driver.name}"
    assert driver.ex_create_security_group(group_name, "web servers")["group_id"].startswith("sg-")
    assert driver.ex_authorize_security_group(group_name, 80, 80, "0.0.0.0/0")  # the flat classic form
    (group,) = driver.ex_get_security_groups(group_names=[group_name])
    assert [(r["protocol"], r["from_port"], r["to_port"], r["cidr_ips"]) for r in group.ingress_rules] == [
        ("tcp", "80", "80", ["0.0.0.0/0"])]

    image = NodeImage(id=ec2_site.ami, name="base", driver=driver)
    size = NodeSize(id="m1.tiny", name="m1.tiny", ram=512, disk=8, bandwidth=None, price=None, driver=driver)
    node = driver.create_node(name="lc-node", image=image, size=size, ex_keyname="lc-key",
                              ex_userdata=USER_DATA, ex_security_groups=[group_name])  # Name tag: ResourceId.0
    ((running, _),) = driver.wait_until_running([node], wait_period=1, timeout=60, ssh_interface="private_ips")
    assert running.state == NodeState.RUNNING and running.extra["key_name"] == "lc-key"
    assert running.name == "lc-node" and running.extra["groups"][0]["group_name"] == group_name

    role = f"libcloud-{driver.name}"  # the instances of earlier tests stay visible while terminated
    assert driver.ex_create_tags(node, {"role": role})
    assert [n.id for n in driver.list_nodes(ex_filters={"tag:role": role})] == [node.id]
    assert driver.list_nodes(ex_filters={"tag:role": "other"}) == []
    assert driver.ex_describe_tags(node) == {"Name": "lc-node", "role": role}

    address = driver.ex_allocate_address(domain="vpc")
    association = driver.ex_associate_address_with_node(node, address, domain="vpc")
    assert driver.ex_describe_addresses_for_node(node) == [address.ip]
    (bound,) = [a for a in driver.ex_describe_all_addresses() if a.ip == address.ip]
    assert bound.instance_id == node.id and bound.extra["association_id"] == association
    assert driver.ex_disassociate_address(bound, domain="vpc")
    assert driver.ex_release_address(address, domain="vpc")

    (ec2_site.site.cloud.consoles.directory / f"{node.id}.log").write_bytes(CONSOLE)
    assert "ivfarm login:" in driver.ex_get_console_output(node)["output"]

    assert driver.ex_stop_node(node)
    poll_until(lambda: _status(driver, node.id) == "stopped", timeout_s=60)
    driver.ex_start_node(node)  # False here: ivfarm answers "running" where AWS answers "pending"
    poll_until(lambda: _status(driver, node.id) == "running", timeout_s=60)
    assert driver.destroy_node(node)
    poll_until(lambda: _status(driver, node.id) == "terminated", timeout_s=60)
    assert driver.delete_key_pair(key)
    assert driver.ex_delete_security_group(group_name)
