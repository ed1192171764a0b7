"""Regions, zones, account attributes, images, instance types, key pairs, elastic IPs and tags via boto3."""
from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ivfarm.services.compute.flavors import add_flavor
from tests.e2e.ec2_support import Ec2Site, error_code

FAST = {"Delay": 1, "MaxAttempts": 60}


def test_region_and_account_attributes(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    (region,) = alpha.describe_regions()["Regions"]
    assert region["RegionName"] == "ivfarm-1"
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_regions(RegionNames=["us-east-1"])
    assert error_code(excinfo) == "InvalidParameterValue"
    attributes = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
                  for a in alpha.describe_account_attributes()["AccountAttributes"]}
    assert attributes["max-instances"] == ["40"]
    assert attributes["max-elastic-ips"] == attributes["vpc-max-elastic-ips"] == ["3"]
    (only,) = alpha.describe_account_attributes(AttributeNames=["max-instances"])["AccountAttributes"]
    assert only["AttributeName"] == "max-instances"


def test_zones_filter(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    zones = alpha.describe_availability_zones(ZoneNames=["ivfarm-1-service"])["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["ivfarm-1-service"]
    filtered = alpha.describe_availability_zones(Filters=[{"Name": "zone-name", "Values": ["*-worker"]}])
    assert [z["ZoneName"] for z in filtered["AvailabilityZones"]] == ["ivfarm-1-worker"]
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_availability_zones(ZoneNames=["nowhere-1a"])
    assert error_code(excinfo) == "InvalidParameterValue"


def test_images_public_and_own(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    (image,) = alpha.describe_images()["Images"]
    assert image["ImageId"] == ec2_site.ami and image["Public"] and image["State"] == "available"
    assert [i["ImageId"] for i in alpha.describe_images(Owners=["amazon"])["Images"]] == [ec2_site.ami]
    assert alpha.describe_images(Owners=["self"])["Images"] == []
    assert len(alpha.describe_images(ExecutableUsers=["all"])["Images"]) == 1
    assert alpha.describe_images(Filters=[{"Name": "name", "Values": ["nothing*"]}])["Images"] == []
    for image_id, code in (("ami-00000000", "InvalidAMIID.NotFound"), ("img-1", "InvalidAMIID.Malformed")):
        with pytest.raises(ClientError) as excinfo:
            alpha.describe_images(ImageIds=[image_id])
        assert error_code(excinfo) == code


def test_instance_types_are_the_flavors_paginated(ec2_site: Ec2Site) -> None:
    for n in range(3):
        add_flavor(ec2_site.site.cloud, f"x1.size{n}", vcpus=n + 1, memory_mb=1024, ephemeral_gb=5)
    alpha = ec2_site.client("alpha")
    pages = list(alpha.get_paginator("describe_instance_types").paginate(PaginationConfig={"PageSize": 5}))
    types = {t["InstanceType"]: t for page in pages for t in page["InstanceTypes"]}
    assert len(pages) == 2 and len(types) == 8
    medium = types["m1.medium"]
    assert medium["VCpuInfo"]["DefaultVCpus"] == 2 and medium["MemoryInfo"]["SizeInMiB"] == 2048
    assert medium["InstanceStorageInfo"]["TotalSizeInGB"] == 20 and medium["InstanceStorageSupported"]
    assert "InstanceStorageInfo" not in types["m1.small"]
    chosen = alpha.describe_instance_types(InstanceTypes=["m1.large"])["InstanceTypes"]
    assert [t["VCpuInfo"]["DefaultVCpus"] for t in chosen] == [4]
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_instance_types(InstanceTypes=["p4d.24xlarge"])
    assert error_code(excinfo) == "InvalidInstanceType"


def test_key_pairs(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    created = alpha.create_key_pair(KeyName="deploy")
    private = serialization.load_pem_private_key(created["KeyMaterial"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    assert created["KeyFingerprint"] == ":".join(f"{b:02x}" for b in hashlib.sha1(pkcs8).digest())
    edwards = alpha.create_key_pair(KeyName="edwards", KeyType="ed25519")
    assert serialization.load_ssh_private_key(edwards["KeyMaterial"].encode(), None)
    with pytest.raises(ClientError) as excinfo:
        alpha.create_key_pair(KeyName="deploy")
    assert error_code(excinfo) == "InvalidKeyPair.Duplicate"

    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    line = mine.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    imported = alpha.import_key_pair(KeyName="laptop", PublicKeyMaterial=line + b" me@laptop")
    der = mine.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert imported["KeyFingerprint"] == ":".join(f"{b:02x}" for b in hashlib.md5(der).digest())
    with pytest.raises(ClientError) as excinfo:
        alpha.import_key_pair(KeyName="junk", PublicKeyMaterial=b"ssh-rsa notakey")
    assert error_code(excinfo) == "InvalidKey.Format"

    listed = {k["KeyName"]: k for k in alpha.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]}
    assert set(listed) == {"deploy", "edwards", "laptop"}
    assert listed["edwards"]["KeyType"] == "ed25519" and listed["laptop"]["PublicKey"].startswith("ssh-rsa ")
    assert [k["KeyName"] for k in alpha.describe_key_pairs(
        Filters=[{"Name": "key-type", "Values": ["ed25519"]}])["KeyPairs"]] == ["edwards"]
    with pytest.raises(ClientError) as excinfo:
        alpha.describe_key_pairs(KeyNames=["nobody"])
    assert error_code(excinfo) == "InvalidKeyPair.NotFound"

    (instance,) = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1, KeyName="laptop")["Instances"]
    assert instance["KeyName"] == "laptop"
    alpha.terminate_instances(InstanceIds=[instance["InstanceId"]])

    alpha.delete_key_pair(KeyName="deploy")
    alpha.delete_key_pair(KeyName="deploy")  # deleting a missing name is fine, as on EC2
    with pytest.raises(ClientError) as excinfo:
        alpha.delete_key_pair(KeyPairId="key-0123456789abcdef0")
    assert error_code(excinfo) == "InvalidKeyPair.NotFound"
    alpha.delete_key_pair(KeyPairId=listed["edwards"]["KeyPairId"])
    assert [k["KeyName"] for k in alpha.describe_key_pairs()["KeyPairs"]] == ["laptop"]


def _ed25519_line() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def test_imported_ed25519_fingerprint_is_sha256(ec2_site: Ec2Site) -> None:
    beta = ec2_site.client("beta")
    line = _ed25519_line()
    imported = beta.import_key_pair(KeyName="ed", PublicKeyMaterial=line)
    blob = base64.b64decode(line.split()[1])
    assert imported["KeyFingerprint"] == base64.b64encode(hashlib.sha256(blob).digest()).decode()
    beta.delete_key_pair(KeyName="ed")


def test_elastic_ips(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    (reserved,) = alpha.describe_addresses()["Addresses"]  # farm create gives one
    extra = alpha.allocate_address(Domain="vpc")
    assert extra["AllocationId"].startswith("eipalloc-")
    third = alpha.allocate_address(Domain="vpc")
    with pytest.raises(ClientError) as excinfo:
        alpha.allocate_address(Domain="vpc")
    assert error_code(excinfo) == "AddressLimitExceeded"

    ids = [i["InstanceId"] for _ in range(2) for i in alpha.run_instances(
        ImageId=ec2_site.ami, MinCount=1, MaxCount=1)["Instances"]]
    alpha.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)
    association = alpha.associate_address(AllocationId=extra["AllocationId"], InstanceId=ids[0])["AssociationId"]
    (bound,) = alpha.describe_addresses(AllocationIds=[extra["AllocationId"]])["Addresses"]
    (instance,) = [i for r in alpha.describe_instances(InstanceIds=[ids[0]])["Reservations"] for i in r["Instances"]]
    assert bound["InstanceId"] == ids[0] and bound["AssociationId"] == association
    assert bound["PrivateIpAddress"] == instance["PrivateIpAddress"]
    assert instance["PublicIpAddress"] == extra["PublicIp"]
    assert [a["PublicIp"] for a in alpha.describe_addresses(
        Filters=[{"Name": "instance-id", "Values": [ids[0]]}])["Addresses"]] == [extra["PublicIp"]]

    with pytest.raises(ClientError) as excinfo:
        alpha.associate_address(AllocationId=extra["AllocationId"], InstanceId=ids[1])
    assert error_code(excinfo) == "Resource.AlreadyAssociated"
    with pytest.raises(ClientError) as excinfo:
        alpha.release_address(AllocationId=extra["AllocationId"])
    assert error_code(excinfo) == "InvalidIPAddress.InUse"
    alpha.associate_address(AllocationId=extra["AllocationId"], InstanceId=ids[1], AllowReassociation=True)
    assert alpha.describe_addresses(AllocationIds=[extra["AllocationId"]])["Addresses"][0]["InstanceId"] == ids[1]

    alpha.disassociate_address(PublicIp=extra["PublicIp"])
    assert "InstanceId" not in alpha.describe_addresses(AllocationIds=[extra["AllocationId"]])["Addresses"][0]
    alpha.release_address(AllocationId=extra["AllocationId"])
    alpha.release_address(PublicIp=third["PublicIp"])
    assert [a["PublicIp"] for a in alpha.describe_addresses()["Addresses"]] == [reserved["PublicIp"]]
    for kwargs, code in (({"AllocationId": "eipalloc-0123456789abcdef0"}, "InvalidAllocationID.NotFound"),
                         ({"AllocationId": "eip-1"}, "InvalidAllocationID.Malformed"),
                         ({"PublicIp": "203.0.113.9"}, "InvalidAddress.NotFound")):
        with pytest.raises(ClientError) as excinfo:
            alpha.release_address(**kwargs)
        assert error_code(excinfo) == code
    alpha.terminate_instances(InstanceIds=ids)


def test_tags(ec2_site: Ec2Site) -> None:
    beta = ec2_site.client("beta")
    (instance,) = beta.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1)["Instances"]
    iid = instance["InstanceId"]
    key_id = beta.create_key_pair(KeyName="tagged")["KeyPairId"]
    (address,) = beta.describe_addresses()["Addresses"]
    resources = [iid, key_id, address["AllocationId"]]
    beta.create_tags(Resources=resources, Tags=[{"Key": "project", "Value": "cms"}, {"Key": "empty", "Value": ""}])
    tags = beta.describe_tags()["Tags"]
    assert {(t["ResourceId"], t["ResourceType"]) for t in tags if t["Key"] == "project"} == {
        (iid, "instance"), (key_id, "key-pair"), (address["AllocationId"], "elastic-ip")}
    only_keys = beta.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])["Tags"]
    assert {t["Key"] for t in only_keys} == {"project", "empty"}
    pages = list(beta.get_paginator("describe_tags").paginate(PaginationConfig={"PageSize": 5}))
    assert sum(len(p["Tags"]) for p in pages) == 6 and len(pages) == 2

    beta.delete_tags(Resources=[iid], Tags=[{"Key": "project", "Value": "atlas"}])  # value differs: kept
    beta.delete_tags(Resources=[key_id], Tags=[{"Key": "project"}])
    beta.delete_tags(Resources=[address["AllocationId"]])
    left = {(t["ResourceId"], t["Key"]) for t in beta.describe_tags()["Tags"]}
    assert left == {(iid, "project"), (iid, "empty"), (key_id, "empty")}

    too_many = [{"Key": f"k{n}", "Value": "v"} for n in range(49)]
    with pytest.raises(ClientError) as excinfo:
        beta.create_tags(Resources=[iid], Tags=too_many)  # 2 + 49 > 50
    assert error_code(excinfo) == "TagLimitExceeded"
    for tags_, resources_, code in (
        ([{"Key": "aws:name", "Value": "x"}], [iid], "InvalidParameterValue"),
        ([{"Key": "k" * 129, "Value": "x"}], [iid], "InvalidParameterValue"),
        ([{"Key": "k", "Value": "v" * 257}], [iid], "InvalidParameterValue"),
        ([{"Key": "k", "Value": "v"}], ["vpn-0123456789abcdef0"], "InvalidID"),
        ([{"Key": "k", "Value": "v"}], ["vol-0123456789abcdef0"], "InvalidVolume.NotFound"),
        ([{"Key": "k", "Value": "v"}], ["i-0123456789abcdef0"], "InvalidInstanceID.NotFound"),
    ):
        with pytest.raises(ClientError) as excinfo:
            beta.create_tags(Resources=resources_, Tags=tags_)
        assert error_code(excinfo) == code
    assert {(t["ResourceId"], t["Key"]) for t in beta.describe_tags()["Tags"]} == left
    beta.delete_key_pair(KeyName="tagged")
    assert {t["ResourceId"] for t in beta.describe_tags()["Tags"]} == {iid}
    beta.terminate_instances(InstanceIds=[iid])


def test_unknown_action_and_parameter(ec2_site: Ec2Site) -> None:
    raw = ec2_site.raw("alpha")
    status, body = raw.call({"Action": "LaunchRocket"})
    assert status == 400 and b"<Code>InvalidAction</Code>" in body
    status, body = raw.call({"Action": "DescribeInstances", "InstanceIds.1": "i-0123456789abcdef0"})
    assert status == 400 and b"<Code>UnknownParameter</Code>" in body
    status, body = raw.call({"Action": "DescribeInstances", "MaxResults": "many"})
    assert status == 400 and b"<Code>InvalidParameterValue</Code>" in body and b"<RequestID>" in body
