"""CreateImage, DeregisterImage and the image attributes (launchPermission, description, ...).

A farm changes only its own images; another farm's private image is NotFound, a shared or public
image it does not own is Unavailable to change. Making an image public (Group=all) is the sysadmin's
(``ivfarm image publish``): a farm asking for it gets OperationNotPermitted.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from ivfarm import ids
from ivfarm.ec2.context import RequestContext, account_id
from ivfarm.ec2.errors import Ec2Error, echo, invalid_value, malformed, missing
from ivfarm.ec2.handlers.common import tag_specifications, visible_seconds
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import require_instances
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.catalog import block_device_mapping
from ivfarm.errors import InvalidInput
from ivfarm.services.compute import image_capture
from ivfarm.services.images import sharing
from ivfarm.store.models import Image

_ACCOUNT = re.compile(r"[0-9]{12}")
IMAGE_ATTRIBUTES = ("description", "kernel", "ramdisk", "launchPermission", "productCodes", "blockDeviceMapping",
                    "sriovNetSupport", "bootMode")


def _image_id(p: Params) -> str:
    image_id = p.required("ImageId", max_length=64)
    if not ids.is_valid(image_id, "image"):
        raise malformed("image", image_id)
    return image_id


def _visible(ctx: RequestContext, image_id: str) -> Image:
    with ctx.cloud.store.read() as session:
        return sharing.visible_image(session, image_id, ctx.farm_id)


def _own(ctx: RequestContext, image_id: str) -> Image:
    with ctx.cloud.store.read() as session:
        return sharing.own_image(session, image_id, ctx.farm_id)


@action("CreateImage")
def create_image(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """A private image of a stopped or running instance; ``pending`` until its job flattened the disk."""
    instance_id = p.required("InstanceId", max_length=64)
    name = p.required("Name", max_length=256)
    description = p.string("Description", max_length=256) or ""
    no_reboot = p.boolean("NoReboot")
    tags = tag_specifications(p, "image")
    if p.structs("BlockDeviceMapping"):
        raise Ec2Error("InvalidBlockDeviceMapping", "CreateImage takes the instance's own disks here; "
                       "BlockDeviceMapping is not supported")
    p.done()
    if not ids.is_valid(instance_id, "instance"):
        raise malformed("instance", instance_id)
    if not image_capture.NAME_RE.match(name):
        raise invalid_value("Name", name, "AMI names are 3 to 128 characters: letters, digits, ( ) [ ] . / ' @ _ - "
                            "and spaces")
    with ctx.cloud.store.read() as session:
        row = require_instances(session, ctx.farm_id, visible_seconds(ctx), [instance_id])[0]
        taken = session.scalar(select(Image.id).where(Image.name == name)) is not None
    if row.state not in ("running", "stopped"):
        raise Ec2Error("IncorrectInstanceState", f"The instance '{instance_id}' is not in a state from which "
                       f"an image can be created ({row.state}).")
    if taken:
        raise Ec2Error("InvalidAMIName.Duplicate", f"AMI name {echo(name)} is already in use by an AMI")
    ctx.proceed()
    image_id = image_capture.begin_create_image(ctx.cloud, ctx.farm_id, instance_id, name, description,
                                                no_reboot=no_reboot, tags=tags, request_id=ctx.request_id)
    return {"imageId": image_id}


@action("DeregisterImage")
def deregister_image(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Deregister one of the farm's images (instances running from it keep running)."""
    image_id = _image_id(p)
    p.boolean("DeleteAssociatedSnapshots")
    p.done()
    image = _own(ctx, image_id)
    if image.state == "pending":
        raise Ec2Error("InvalidAMIID.Unavailable", f"The image id '[{image_id}]' is still being created")
    ctx.proceed()
    sharing.deregister(ctx.cloud, ctx.farm_id, image_id)
    return {"return": True}


def _permissions(ctx: RequestContext, image: Image) -> list[dict[str, Any]]:
    with ctx.cloud.store.read() as session:
        farms = sharing.shared_with(session, [image.id]).get(image.id, [])
    items: list[dict[str, Any]] = [{"group": "all"}] if image.public else []
    if image.owner_farm_id == ctx.farm_id:  # whom an image is shared with is its owner's to know
        items += [{"userId": account_id(f)} for f in farms]
    return items


@action("DescribeImageAttribute")
def describe_image_attribute(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """One attribute of an image the farm may see."""
    attribute = p.required("Attribute", max_length=64)
    image_id = _image_id(p)
    p.done()
    if attribute not in IMAGE_ATTRIBUTES:
        raise invalid_value("Attribute", attribute, f"use one of {', '.join(IMAGE_ATTRIBUTES)}")
    image = _visible(ctx, image_id)
    ctx.proceed()
    values: dict[str, Any] = {
        "description": {"value": image.description} if image.description else {},
        "kernel": {"value": image.kernel_id} if image.kernel_id else {},
        "ramdisk": {"value": image.ramdisk_id} if image.ramdisk_id else {},
        "productCodes": [], "sriovNetSupport": {}, "bootMode": {"value": "legacy-bios"},
        "blockDeviceMapping": block_device_mapping(image),
    }
    value = _permissions(ctx, image) if attribute == "launchPermission" else values[attribute]
    return {"imageId": image_id, attribute: value}


def _account(value: str) -> int:
    if not _ACCOUNT.fullmatch(value):
        raise Ec2Error("InvalidAMIAttributeItemValue", f"Invalid attribute item value \"{echo(value)}\" for userId")
    return int(value)


def _groups(values: list[str]) -> bool:
    for group in values:
        if group != "all":
            raise Ec2Error("InvalidAMIAttributeItemValue", f"Invalid attribute item value \"{echo(group)}\" for group")
    return bool(values)


def _launch_changes(p: Params) -> tuple[list[int], list[int], bool]:
    """(accounts to add, accounts to remove, whether Group=all was named) from either spelling."""
    add: list[int] = []
    remove: list[int] = []
    operation = p.choice("OperationType", ("add", "remove"))
    users = [_account(u) for u in p.strings("UserId", max_length=64)]
    public = _groups(p.strings("UserGroup", max_length=64))
    p.strings("ProductCode", max_length=64)
    if users or public:
        if operation is None:
            raise missing("OperationType")
        (add if operation == "add" else remove).extend(users)
    permission = p.struct("LaunchPermission")
    for side, into in (("Add", add), ("Remove", remove)):
        for item in permission.structs(side):
            user = item.string("UserId", max_length=64)
            group = item.string("Group", max_length=64)
            item.string("OrganizationArn", max_length=256)
            item.string("OrganizationalUnitArn", max_length=256)
            if user is not None:
                into.append(_account(user))
            if group is not None:
                public = _groups([group]) or public
    return add, remove, public


@action("ModifyImageAttribute")
def modify_image_attribute(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Share the farm's image with other farms' accounts (launchPermission), or change its description."""
    image_id = _image_id(p)
    attribute = p.choice("Attribute", ("launchPermission", "description"))
    description = p.struct("Description").string("Value", max_length=256)
    value = p.string("Value", max_length=256)
    add, remove, public = _launch_changes(p)
    p.done()
    if attribute == "description" and description is None:
        description = value
    if description is None and not (add or remove or public):
        raise missing("LaunchPermission")
    if description is not None and (add or remove or public):
        raise Ec2Error("InvalidParameterCombination", "Change the description and the launch permissions apart")
    image = _own(ctx, image_id)
    if image.state == "pending" and description is None:
        raise Ec2Error("InvalidAMIID.Unavailable", f"The image id '[{image_id}]' is still being created")
    if public:
        raise Ec2Error("OperationNotPermitted", "Only the site administrator makes images public here "
                       "(ivfarm image publish); share with accounts (UserId) instead")
    ctx.proceed()
    if description is not None:
        sharing.set_description(ctx.cloud, ctx.farm_id, image_id, description)
    else:
        try:
            sharing.change_permissions(ctx.cloud, ctx.farm_id, image_id, add, remove)
        except InvalidInput as exc:
            raise Ec2Error("InvalidAMIAttributeItemValue", str(exc)) from exc
    return {"return": True}


@action("ResetImageAttribute")
def reset_image_attribute(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Stop sharing the farm's image with any other farm."""
    image_id = _image_id(p)
    if p.choice("Attribute", ("launchPermission",)) is None:
        raise missing("Attribute")
    p.done()
    _own(ctx, image_id)
    ctx.proceed()
    sharing.reset_permissions(ctx.cloud, ctx.farm_id, image_id)
    return {"return": True}
