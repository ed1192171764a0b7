"""The VPC view of a farm through boto3: one default VPC, one subnet, its route table, gateway, interfaces."""
from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ivfarm.services.farms.lifecycle import find_farm
from tests.e2e.ec2_support import Ec2Site, error_code

FAST = {"Delay": 1, "MaxAttempts": 60}


def _code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return error_code(excinfo)


def test_a_farm_is_one_default_vpc_with_one_subnet(ec2_site: Ec2Site) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    cidr = find_farm(ec2_site.site.cloud, "alpha").cidr
    (vpc,) = alpha.describe_vpcs()["Vpcs"]
    assert vpc["CidrBlock"] == cidr and vpc["IsDefault"] and vpc["State"] == "available"
    (theirs,) = beta.describe_vpcs()["Vpcs"]
    assert theirs["VpcId"] != vpc["VpcId"]
    assert _code(beta.describe_vpcs, VpcIds=[vpc["VpcId"]]) == "InvalidVpcID.NotFound"
    assert alpha.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["false"]}])["Vpcs"] == []
    (subnet,) = alpha.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert subnet["CidrBlock"] == cidr and subnet["VpcId"] == vpc["VpcId"]
    assert 0 < subnet["AvailableIpAddressCount"] < ipaddress.IPv4Network(cidr).num_addresses
    assert _code(beta.describe_subnets, SubnetIds=[subnet["SubnetId"]]) == "InvalidSubnetID.NotFound"
    (table,) = alpha.describe_route_tables()["RouteTables"]
    assert {r["DestinationCidrBlock"] for r in table["Routes"]} == {cidr, "0.0.0.0/0"}
    (gateway,) = alpha.describe_internet_gateways()["InternetGateways"]
    assert gateway["Attachments"] == [{"VpcId": vpc["VpcId"], "State": "available"}]
    assert alpha.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsSupport")[
        "EnableDnsSupport"] == {"Value": True}
    assert _code(beta.describe_vpc_attribute, VpcId=vpc["VpcId"], Attribute="enableDnsSupport") == \
        "InvalidVpcID.NotFound"
    attributes = {a["AttributeName"]: a["AttributeValues"][0]["AttributeValue"]
                  for a in alpha.describe_account_attributes()["AccountAttributes"]}
    assert attributes["default-vpc"] == vpc["VpcId"]
    for call, kwargs in ((alpha.create_vpc, {"CidrBlock": "10.9.0.0/16"}),
                         (alpha.delete_vpc, {"VpcId": vpc["VpcId"]}),
                         (alpha.create_subnet, {"VpcId": vpc["VpcId"], "CidrBlock": "10.9.0.0/24"}),
                         (alpha.delete_subnet, {"SubnetId": subnet["SubnetId"]}),
                         (alpha.create_internet_gateway, {}),
                         (alpha.delete_internet_gateway, {"InternetGatewayId": gateway["InternetGatewayId"]})):
        assert _code(call, **kwargs) == "UnsupportedOperation"


def test_instances_in_the_subnet_with_chosen_addresses(ec2_site: Ec2Site) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    (subnet,) = alpha.describe_subnets()["Subnets"]
    network = ipaddress.IPv4Network(subnet["CidrBlock"])
    wanted = str(network.network_address + 200)
    [instance] = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
                                     PrivateIpAddress=wanted,
                                     InstanceInitiatedShutdownBehavior="terminate")["Instances"]
    assert instance["PrivateIpAddress"] == wanted
    assert (instance["VpcId"], instance["SubnetId"]) == (subnet["VpcId"], subnet["SubnetId"])
    assert _code(alpha.run_instances, ImageId=ec2_site.ami, MinCount=1, MaxCount=1,
                 PrivateIpAddress=wanted) == "InvalidIPAddress.InUse"
    assert _code(alpha.run_instances, ImageId=ec2_site.ami, MinCount=1, MaxCount=1,
                 PrivateIpAddress="192.0.2.10") == "InvalidParameterValue"
    assert _code(alpha.run_instances, ImageId=ec2_site.ami, MinCount=2, MaxCount=2,
                 PrivateIpAddress=str(network.network_address + 201)) == "InvalidParameterCombination"
    (beta_subnet,) = beta.describe_subnets()["Subnets"]
    assert _code(alpha.run_instances, ImageId=ec2_site.ami, MinCount=1, MaxCount=1,
                 SubnetId=beta_subnet["SubnetId"]) == "InvalidSubnetID.NotFound"
    attribute = alpha.describe_instance_attribute(InstanceId=instance["InstanceId"],
                                                  Attribute="instanceInitiatedShutdownBehavior")
    assert attribute["InstanceInitiatedShutdownBehavior"] == {"Value": "terminate"}
    for name, value in (("vpc-id", subnet["VpcId"]), ("subnet-id", subnet["SubnetId"]),
                        ("owner-id", alpha.describe_security_groups()["SecurityGroups"][0]["OwnerId"])):
        found = alpha.describe_instances(Filters=[{"Name": name, "Values": [value]},
                                                  {"Name": "private-ip-address", "Values": [wanted]}])
        assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [instance["InstanceId"]]
        assert beta.describe_instances(Filters=[{"Name": name, "Values": [value]}])["Reservations"] == []
    alpha.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]], WaiterConfig=FAST)
    interfaces = alpha.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}])["NetworkInterfaces"]
    (interface,) = interfaces
    assert interface["PrivateIpAddress"] == wanted and interface["MacAddress"].startswith("02:00:")
    assert interface["Groups"][0]["GroupName"] == "default"
    assert interface["Attachment"]["Status"] == "attached" and interface["SubnetId"] == subnet["SubnetId"]
    assert _code(beta.describe_network_interfaces, NetworkInterfaceIds=[interface["NetworkInterfaceId"]]) == \
        "InvalidNetworkInterfaceID.NotFound"
    alpha.terminate_instances(InstanceIds=[instance["InstanceId"]])
    alpha.get_waiter("instance_terminated").wait(InstanceIds=[instance["InstanceId"]], WaiterConfig=FAST)
    assert alpha.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}])["NetworkInterfaces"] == []
