"""DescribeInstanceAttribute and ModifyInstanceAttribute.

ModifyInstanceAttribute changes one attribute per call, in either spelling (``Attribute`` + ``Value``
or ``<Attribute>.Value``): security groups (``GroupId.N``, live), ``InstanceType`` and ``UserData``
(stopped instances; made anew at the next start), ``InstanceInitiatedShutdownBehavior`` and
``DisableApiTermination``.
"""
from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select

from ivfarm import ids
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, combination, invalid_value, malformed, missing
from ivfarm.ec2.handlers.common import id_list
from ivfarm.ec2.handlers.instances import load_rows, user_data_param
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import check_ids
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.instances import Related
from ivfarm.errors import InvalidInput, InvalidState
from ivfarm.services.compute import instance_attributes
from ivfarm.services.compute.instance_attributes import AttributeChange
from ivfarm.services.network import firewall
from ivfarm.services.tenancy import security_groups
from ivfarm.store.models import Flavor, Instance

ATTRIBUTES = ("instanceType", "kernel", "ramdisk", "userData", "disableApiTermination", "disableApiStop",
              "instanceInitiatedShutdownBehavior", "rootDeviceName", "blockDeviceMapping", "productCodes",
              "sourceDestCheck", "groupSet", "ebsOptimized", "sriovNetSupport", "enaSupport")
CHANGEABLE = ("instanceType", "userData", "instanceInitiatedShutdownBehavior", "disableApiTermination")
READ_ONLY = ("kernel", "ramdisk", "sourceDestCheck", "ebsOptimized", "sriovNetSupport", "enaSupport",
             "disableApiStop", "blockDeviceMapping")


def _attribute_value(name: str, row: Any, user_data: bytes | None, related: Related) -> Any:
    kernel, ramdisk = related.boot.get(row.image_id, (None, None))
    simple: dict[str, Any] = {
        "instanceType": row.flavor_name, "kernel": kernel, "ramdisk": ramdisk,
        "disableApiTermination": bool(row.disable_api_termination), "disableApiStop": False,
        "instanceInitiatedShutdownBehavior": row.shutdown_behavior,
        "rootDeviceName": "/dev/vda", "sourceDestCheck": True, "ebsOptimized": False,
        "sriovNetSupport": None, "enaSupport": False,
    }
    if name == "userData":
        return {"value": base64.b64encode(user_data).decode()} if user_data else {}
    if name == "groupSet":
        return [{"groupId": g} for g, _ in related.groups.get(row.id, ())]
    if name == "blockDeviceMapping":
        return [{"deviceName": "/dev/vda", "ebs": {"volumeId": f"vol-{row.id[2:]}", "status": "attached",
                                                   "deleteOnTermination": True, "attachTime": row.created_at}}]
    if name == "productCodes":
        return []
    value = simple[name]
    return {"value": value} if value is not None else {}


@action("DescribeInstanceAttribute")
def describe_instance_attribute(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """One attribute of one instance (instanceType, userData, disableApiTermination, ...)."""
    instance_id = p.required("InstanceId", max_length=64)
    attribute = p.required("Attribute", max_length=64)
    p.done()
    if not ids.is_valid(instance_id, "instance"):
        raise malformed("instance", instance_id)
    if attribute not in ATTRIBUTES:
        raise invalid_value("Attribute", attribute, "unknown attribute")
    rows, related = load_rows(ctx, [instance_id])
    ctx.proceed()
    user_data = None
    if attribute == "userData":
        with ctx.cloud.store.read() as session:
            user_data = session.scalar(select(Instance.user_data).where(Instance.id == instance_id))
    return {"instanceId": instance_id, attribute: _attribute_value(attribute, rows[0], user_data, related)}


def _boolean(name: str, raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise Ec2Error("InvalidParameterValue", f"Value ({raw}) for parameter {name} is invalid. Expected: 'true' or 'false'.")
    return raw.lower() == "true"


def _given(p: Params) -> dict[str, str]:
    """``{attribute: raw value}`` of every ``<Attribute>.Value`` and of ``Attribute``/``Value``."""
    given: dict[str, str] = {}
    for name in (*CHANGEABLE, *READ_ONLY):
        raw = p.struct(name[0].upper() + name[1:]).string("Value", max_length=32 * 1024)
        if raw is not None:
            given[name] = raw
    attribute = p.string("Attribute", max_length=64)
    value = p.string("Value", max_length=32 * 1024)
    if attribute is not None:
        if attribute not in ATTRIBUTES or attribute == "groupSet":
            raise invalid_value("Attribute", attribute, "this attribute cannot be changed with Value")
        if value is None:
            raise missing("Value")
        given[attribute] = value
    elif value is not None:
        raise missing("Attribute")
    return given


def _change(name: str, raw: str) -> AttributeChange:
    if name == "instanceType":
        return AttributeChange(instance_type=raw)
    if name == "userData":
        data = user_data_param(raw)
        return AttributeChange(user_data=data, clear_user_data=data is None)
    if name == "instanceInitiatedShutdownBehavior":
        if raw not in instance_attributes.SHUTDOWN_BEHAVIORS:
            raise Ec2Error("InvalidParameterValue", f"Value ({raw}) for parameter instanceInitiatedShutdownBehavior "
                           f"is invalid. Expected: 'stop' or 'terminate'.")
        return AttributeChange(shutdown_behavior=raw)
    if name == "disableApiTermination":
        return AttributeChange(disable_api_termination=_boolean(name, raw))
    raise Ec2Error("UnsupportedOperation", f"The attribute {name} cannot be changed here")


@action("ModifyInstanceAttribute")
def modify_instance_attribute(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Change one attribute of an instance (security groups, type, user data, shutdown behavior, protection)."""
    instance_id = p.required("InstanceId", max_length=64)
    group_ids = check_ids("security_group", id_list(p, "GroupId"))
    given = _given(p)
    p.done()
    if not ids.is_valid(instance_id, "instance"):
        raise malformed("instance", instance_id)
    if len(given) + bool(group_ids) > 1:
        raise combination("Modify one attribute per call: give only one of "
                          f"{', '.join(sorted(given) + (['GroupId'] if group_ids else []))}")
    if not given and not group_ids:
        raise missing("Attribute")
    rows, _ = load_rows(ctx, [instance_id])
    change = None
    if given:
        ((name, raw),) = given.items()
        change = _change(name, raw)
        if change.instance_type is not None:
            with ctx.cloud.store.read() as session:
                if session.get(Flavor, change.instance_type) is None:
                    raise Ec2Error("InvalidInstanceAttributeValue", f"The instance type '{raw[:80]}' does not exist")
        if (change.instance_type is not None or name == "userData") and rows[0].state != "stopped":
            raise Ec2Error("IncorrectInstanceState", f"The instance '{instance_id}' is not in the 'stopped' state.")
    ctx.proceed()
    if change is not None:
        try:
            instance_attributes.modify(ctx.cloud, ctx.farm_id, instance_id, change)
        except InvalidInput as exc:
            raise Ec2Error("InvalidInstanceAttributeValue", str(exc)) from exc
        except InvalidState as exc:
            raise Ec2Error("IncorrectInstanceState", str(exc)) from exc
        return {"return": True}
    try:
        security_groups.replace_groups(ctx.cloud, ctx.farm_id, instance_id, group_ids)
    except security_groups.GroupLimit as exc:
        raise Ec2Error("SecurityGroupsPerInstanceLimitExceeded",
                       f"The maximum number of security groups per instance ({exc.limit}) has been reached.") from exc
    except InvalidInput as exc:
        raise Ec2Error("IncorrectInstanceState", str(exc)) from exc
    firewall.refresh_farm(ctx.cloud, ctx.farm_id)
    return {"return": True}
