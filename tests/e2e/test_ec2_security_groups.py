"""Security groups through boto3 and the flat EC2-classic form: rules, membership, errors, farms apart."""
from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.ec2_support import Ec2Site, error_code, start_site


def _group(client: Any, name: str) -> dict[str, Any]:
    (group,) = client.describe_security_groups(GroupNames=[name])["SecurityGroups"]
    return dict(group)


def _codes(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return error_code(excinfo)


def _ok(raw: Any, params: dict[str, str]) -> None:
    status, body = raw.call(params)
    assert status == 200, body


def test_every_farm_has_its_own_default_group(ec2_site: Ec2Site) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    mine, theirs = _group(alpha, "default"), _group(beta, "default")
    assert mine["GroupId"] != theirs["GroupId"]
    assert mine["OwnerId"] != theirs["OwnerId"]
    (inbound,) = mine["IpPermissions"]
    assert inbound["IpProtocol"] == "-1" and inbound["IpRanges"] == []
    assert [p["GroupId"] for p in inbound["UserIdGroupPairs"]] == [mine["GroupId"]]
    (outbound,) = mine["IpPermissionsEgress"]
    assert outbound["IpProtocol"] == "-1" and outbound["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    assert mine["VpcId"].startswith("vpc-")
    assert _codes(alpha.delete_security_group, GroupName="default") == "CannotDelete"


def test_create_authorize_describe_revoke_delete(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    group_id = alpha.create_security_group(
        GroupName="web", Description="web servers",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "tier", "Value": "front"}]}],
    )["GroupId"]
    assert group_id.startswith("sg-")
    assert _codes(alpha.create_security_group, GroupName="web", Description="again") == "InvalidGroup.Duplicate"
    default_id = _group(alpha, "default")["GroupId"]
    answer = alpha.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8099,
         "IpRanges": [{"CidrIp": "192.168.1.7/24", "Description": "lab"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "UserIdGroupPairs": [{"GroupId": default_id}]},
    ])
    assert answer["Return"] and len(answer["SecurityGroupRules"]) == 4
    assert _codes(alpha.authorize_security_group_ingress, GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ]) == "InvalidPermission.Duplicate"
    group = _group(alpha, "web")
    assert group["Tags"] == [{"Key": "tier", "Value": "front"}]
    by_port = {(p["IpProtocol"], p.get("FromPort")): p for p in group["IpPermissions"]}
    assert by_port[("tcp", 8000)]["ToPort"] == 8099
    assert by_port[("tcp", 8000)]["IpRanges"] == [{"CidrIp": "192.168.1.0/24", "Description": "lab"}]
    assert by_port[("icmp", 8)]["ToPort"] == -1
    assert by_port[("udp", 53)]["UserIdGroupPairs"][0]["GroupId"] == default_id
    # filters, including ip-permission.*
    for name, value in (("ip-permission.from-port", "8000"), ("ip-permission.cidr", "0.0.0.0/0"),
                        ("group-name", "we*"), ("group-id", group_id),
                        ("tag:tier", "front"), ("ip-permission.protocol", "icmp")):
        found = alpha.describe_security_groups(Filters=[{"Name": name, "Values": [value]}])["SecurityGroups"]
        assert [g["GroupId"] for g in found] == [group_id], name
    assert alpha.describe_security_groups(
        Filters=[{"Name": "ip-permission.to-port", "Values": ["22"]}])["SecurityGroups"] == []
    referring = alpha.describe_security_groups(Filters=[{"Name": "ip-permission.group-id", "Values": [default_id]}])
    assert {g["GroupId"] for g in referring["SecurityGroups"]} == {group_id, default_id}
    rules = alpha.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    ingress = [r for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
    assert len(ingress) == 4
    assert {r["CidrIpv4"] for r in rules["SecurityGroupRules"] if r["IsEgress"]} == {"0.0.0.0/0"}
    # revoke one rule by its permission, one by its rule id, then a missing one
    alpha.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    icmp = next(r for r in ingress if r["IpProtocol"] == "icmp")
    alpha.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=[icmp["SecurityGroupRuleId"]])
    assert {p["IpProtocol"] for p in _group(alpha, "web")["IpPermissions"]} == {"tcp", "udp"}
    assert _codes(alpha.revoke_security_group_ingress, GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ]) == "InvalidPermission.NotFound"
    # egress
    alpha.revoke_security_group_egress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    alpha.authorize_security_group_egress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    (egress,) = _group(alpha, "web")["IpPermissionsEgress"]
    assert (egress["IpProtocol"], egress["FromPort"]) == ("tcp", 443)
    # default references nothing of web; web references default, so default stays; web goes
    alpha.delete_security_group(GroupId=group_id)
    assert _codes(alpha.describe_security_groups, GroupIds=[group_id]) == "InvalidGroup.NotFound"
    assert _codes(alpha.delete_security_group, GroupId=group_id) == "InvalidGroup.NotFound"


def test_bad_rules_get_aws_codes(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    group_id = alpha.create_security_group(GroupName="strict", Description="strict")["GroupId"]
    bad = [
        ({"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
         "InvalidParameterValue"),
        ({"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "InvalidParameterValue"),
        ({"IpProtocol": "gre", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "InvalidParameterValue"),
        ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "IpRanges": [{"CidrIp": "300.0.0.0/8"}]},
         "InvalidParameterValue"),
        ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": "sg-00000000"}]},
         "InvalidGroup.NotFound"),
        ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": "nonsense"}]},
         "InvalidGroupId.Malformed"),
    ]
    for permission, code in bad:
        assert _codes(alpha.authorize_security_group_ingress, GroupId=group_id,
                      IpPermissions=[permission]) == code, permission
    assert _codes(alpha.authorize_security_group_ingress, GroupId="sg-00000000", IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == "InvalidGroup.NotFound"
    assert _codes(alpha.create_security_group, GroupName="sg-x", Description="x") == "InvalidParameterValue"
    assert _codes(alpha.describe_security_groups, Filters=[{"Name": "colour", "Values": ["x"]}]) == \
        "InvalidParameterValue"
    alpha.delete_security_group(GroupName="strict")


def test_flat_classic_form(ec2_site: Ec2Site) -> None:
    raw = ec2_site.raw("alpha")
    alpha = ec2_site.client("alpha")
    alpha.create_security_group(GroupName="classic", Description="euca2ools style")
    _ok(raw, {"Action": "AuthorizeSecurityGroupIngress", "GroupName": "classic", "IpProtocol": "tcp", "FromPort": "22",
                                               "ToPort": "22", "CidrIp": "10.1.0.0/16"})
    _ok(raw, {"Action": "AuthorizeSecurityGroupIngress", "GroupName": "classic", "SourceSecurityGroupName": "default"})
    group = _group(alpha, "classic")
    by_protocol = {p["IpProtocol"]: p for p in group["IpPermissions"]}
    assert by_protocol["tcp"]["IpRanges"] == [{"CidrIp": "10.1.0.0/16"}]
    assert by_protocol["-1"]["UserIdGroupPairs"][0]["GroupName"] == "default"
    assert _codes(alpha.delete_security_group, GroupName="default") == "CannotDelete"
    _ok(raw, {"Action": "RevokeSecurityGroupIngress", "GroupName": "classic", "IpProtocol": "tcp", "FromPort": "22",
                                            "ToPort": "22", "CidrIp": "10.1.0.0/16"})
    _ok(raw, {"Action": "RevokeSecurityGroupIngress", "GroupName": "classic", "SourceSecurityGroupName": "default"})
    assert _group(alpha, "classic")["IpPermissions"] == []
    _ok(raw, {"Action": "DeleteSecurityGroup", "GroupName": "classic"})


def test_instances_join_groups_and_change_them(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    default_id = _group(alpha, "default")["GroupId"]
    app_id = alpha.create_security_group(GroupName="app", Description="app")["GroupId"]
    plain = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1)["Instances"][0]
    assert plain["SecurityGroups"] == [{"GroupId": default_id, "GroupName": "default"}]
    both = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1, SecurityGroups=["default"],
                               SecurityGroupIds=[app_id])["Instances"][0]
    assert {g["GroupName"] for g in both["SecurityGroups"]} == {"default", "app"}
    assert _codes(alpha.run_instances, ImageId=ec2_site.ami, MinCount=1, MaxCount=1,
                  SecurityGroups=["nowhere"]) == "InvalidGroup.NotFound"
    # a group in use cannot go; nor can a group another group's rule names
    assert _codes(alpha.delete_security_group, GroupId=app_id) == "DependencyViolation"
    found = alpha.describe_instances(Filters=[{"Name": "instance.group-name", "Values": ["app"]}])
    assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [both["InstanceId"]]
    found = alpha.describe_instances(Filters=[{"Name": "instance.group-id", "Values": [default_id]}])
    assert {i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]} >= {
        plain["InstanceId"], both["InstanceId"]}
    alpha.modify_instance_attribute(InstanceId=both["InstanceId"], Groups=[default_id])
    attribute = alpha.describe_instance_attribute(InstanceId=both["InstanceId"], Attribute="groupSet")
    assert attribute["Groups"] == [{"GroupId": default_id}]
    assert _codes(alpha.modify_instance_attribute, InstanceId=plain["InstanceId"],
                  Groups=["sg-00000000"]) == "InvalidGroup.NotFound"
    alpha.delete_security_group(GroupId=app_id)
    alpha.terminate_instances(InstanceIds=[plain["InstanceId"], both["InstanceId"]])


def test_group_referenced_by_a_rule_cannot_be_deleted(ec2_site: Ec2Site) -> None:
    alpha = ec2_site.client("alpha")
    db_id = alpha.create_security_group(GroupName="db", Description="db")["GroupId"]
    api_id = alpha.create_security_group(GroupName="api", Description="api")["GroupId"]
    alpha.authorize_security_group_ingress(GroupId=db_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": api_id}]}])
    assert _codes(alpha.delete_security_group, GroupId=api_id) == "DependencyViolation"
    alpha.delete_security_group(GroupId=db_id)
    alpha.delete_security_group(GroupId=api_id)


def test_farms_cannot_see_or_touch_each_others_groups(ec2_site: Ec2Site) -> None:
    alpha, beta = ec2_site.client("alpha"), ec2_site.client("beta")
    secret_id = alpha.create_security_group(GroupName="secret", Description="alpha only")["GroupId"]
    assert "secret" not in {g["GroupName"] for g in beta.describe_security_groups()["SecurityGroups"]}
    assert _codes(beta.describe_security_groups, GroupIds=[secret_id]) == "InvalidGroup.NotFound"
    assert _codes(beta.delete_security_group, GroupId=secret_id) == "InvalidGroup.NotFound"
    permission = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    for call in (beta.authorize_security_group_ingress, beta.revoke_security_group_ingress,
                 beta.authorize_security_group_egress, beta.revoke_security_group_egress):
        assert _codes(call, GroupId=secret_id, IpPermissions=[permission]) == "InvalidGroup.NotFound"
    beta_default = _group(beta, "default")["GroupId"]
    assert _codes(beta.authorize_security_group_ingress, GroupId=beta_default, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": secret_id}]},
    ]) == "InvalidGroup.NotFound"
    assert _codes(beta.run_instances, ImageId=ec2_site.ami, MinCount=1, MaxCount=1,
                  SecurityGroupIds=[secret_id]) == "InvalidGroup.NotFound"
    rules = beta.describe_security_group_rules()["SecurityGroupRules"]
    assert {r["GroupId"] for r in rules} == {beta_default}
    assert _codes(beta.create_tags, Resources=[secret_id], Tags=[{"Key": "k", "Value": "v"}]) == \
        "InvalidGroup.NotFound"
    (alpha_rule,) = alpha.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [secret_id]}])["SecurityGroupRules"]
    rule_id = alpha_rule["SecurityGroupRuleId"]
    assert _codes(beta.describe_security_group_rules, SecurityGroupRuleIds=[rule_id]) == \
        "InvalidSecurityGroupRuleId.NotFound"
    assert _codes(beta.revoke_security_group_egress, GroupId=beta_default, SecurityGroupRuleIds=[rule_id]) == \
        "InvalidSecurityGroupRuleId.NotFound"
    [mine] = alpha.run_instances(ImageId=ec2_site.ami, MinCount=1, MaxCount=1)["Instances"]
    assert _codes(beta.modify_instance_attribute, InstanceId=mine["InstanceId"], Groups=[beta_default]) == \
        "InvalidInstanceID.NotFound"
    assert _codes(alpha.modify_instance_attribute, InstanceId=mine["InstanceId"], Groups=[beta_default]) == \
        "InvalidGroup.NotFound"
    alpha.terminate_instances(InstanceIds=[mine["InstanceId"]])
    assert len(alpha.describe_security_group_rules(SecurityGroupRuleIds=[rule_id])["SecurityGroupRules"]) == 1
    alpha.delete_security_group(GroupId=secret_id)


def test_group_and_rule_limits(tmp_path_factory: pytest.TempPathFactory) -> None:
    site = start_site(tmp_path_factory.mktemp("sglimits"),
                      settings={"ec2": {"security_groups": {"per_farm": 2, "rules_per_group": 2, "per_instance": 1}}})
    try:
        alpha = site.client("alpha")
        group_id = alpha.create_security_group(GroupName="one", Description="one")["GroupId"]
        assert _codes(alpha.create_security_group, GroupName="two", Description="two") == \
            "SecurityGroupLimitExceeded"
        alpha.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
        assert _codes(alpha.authorize_security_group_ingress, GroupId=group_id, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 2, "ToPort": 3,
             "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "11.0.0.0/8"}]}]) == \
            "RulesPerSecurityGroupLimitExceeded"
        assert _codes(alpha.run_instances, ImageId=site.ami, MinCount=1, MaxCount=1,
                      SecurityGroups=["default", "one"]) == "SecurityGroupsPerInstanceLimitExceeded"
    finally:
        site.site.close()
