"""DescribeImages (public images and the farm's own) and DescribeInstanceTypes (the flavors)."""
from __future__ import annotations

import re
from typing import Any

from ivfarm import ids
from ivfarm.ec2 import pagination
from ivfarm.ec2.context import RequestContext, account_id
from ivfarm.ec2.errors import Ec2Error, echo, malformed, not_found
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.serializer import timestamp
from ivfarm.ec2.views.catalog import (
    SITE_OWNER_ALIAS,
    SITE_OWNER_ID,
    image_item,
    instance_type_item,
)
from ivfarm.services.compute.flavors import list_flavors
from ivfarm.services.images import sharing
from ivfarm.services.images.catalog import list_images

_ACCOUNT = re.compile(r"[0-9]{12}")
OTHER_ALIASES = ("aws-marketplace", "aws-backup-vault")  # AWS's other owners: none of their images are here
IMAGE_FILTERS = documented("DescribeImages", {
    "image-id": lambda i: (i["imageId"],),
    "name": lambda i: (i["name"],),
    "state": lambda i: (i["imageState"],),
    "owner-id": lambda i: (i["imageOwnerId"],),
    "owner-alias": lambda i: (i["imageOwnerAlias"],),
    "is-public": lambda i: ("true" if i["isPublic"] else "false",),
    "architecture": lambda i: (i["architecture"],),
    "image-type": lambda i: (i["imageType"],),
    "kernel-id": lambda i: (i["kernelId"],),
    "ramdisk-id": lambda i: (i["ramdiskId"],),
    "description": lambda i: (i["description"],),
    "root-device-type": lambda i: (i["rootDeviceType"],),
    "root-device-name": lambda i: (i["rootDeviceName"],),
    "virtualization-type": lambda i: (i["virtualizationType"],),
    "hypervisor": lambda i: (i["hypervisor"],),
    "creation-date": lambda i: (timestamp(i["creationDate"]),),
})
TYPE_FILTERS = documented("DescribeInstanceTypes", {
    "instance-type": lambda t: (t["instanceType"],),
    "current-generation": lambda t: ("true",),
    "vcpu-info.default-vcpus": lambda t: (str(t["vCpuInfo"]["defaultVCpus"]),),
    "memory-info.size-in-mib": lambda t: (str(t["memoryInfo"]["sizeInMiB"]),),
    "instance-storage-supported": lambda t: ("true" if t["instanceStorageSupported"] else "false",),
    "instance-storage-info.total-size-in-gb": lambda t: (
        str(t["instanceStorageInfo"]["totalSizeInGB"]) if t["instanceStorageInfo"] else None,),
    "processor-info.supported-architecture": lambda t: ("x86_64",),
    "hypervisor": lambda t: (t["hypervisor"],),
    "vcpu-info.default-cores": lambda t: (str(t["vCpuInfo"]["defaultCores"]),),
})


def _owner_matches(owners: list[str], owner_id: str, mine: str) -> bool:
    for owner in owners:
        if owner == "self" and owner_id == mine:
            return True
        if owner == SITE_OWNER_ALIAS and owner_id == SITE_OWNER_ID:
            return True
        if owner == owner_id:
            return True
    return False


def _executable_matches(users: list[str], public: bool, mine: str, shared: list[str]) -> bool:
    """ExecutableBy: ``all`` means public images; ``self`` (or the farm's id) every image it may launch;
    another account, the images it may launch among those shown (public, or shared with it)."""
    if not users:
        return True
    for user in users:
        if user == "all":
            if public:
                return True
        elif user in ("self", mine) or public or user in shared:
            return True
    return False


@action("DescribeImages")
def describe_images(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Images the farm may launch: public ones and its own."""
    image_ids = p.strings("ImageId", max_length=64)
    owners = p.strings("Owner", max_length=64)
    users = p.strings("ExecutableBy", max_length=64)
    p.boolean("IncludeDeprecated")
    p.boolean("IncludeDisabled")
    page = pagination.read_page(p, 1, 1000, exclusive=("ImageId",))
    filters = parse_filters(p, IMAGE_FILTERS)
    p.done()
    for image_id in image_ids:
        if not ids.is_image_id(image_id):
            raise malformed("image", image_id)
    for value in owners:
        if value not in ("self", SITE_OWNER_ALIAS, *OTHER_ALIASES) and not _ACCOUNT.fullmatch(value):
            raise Ec2Error("InvalidUserID.Malformed", f"Invalid user id: \"{echo(value)}\"")
    for value in users:
        if value not in ("self", "all") and not _ACCOUNT.fullmatch(value):
            raise Ec2Error("InvalidUserID.Malformed", f"Invalid user id: \"{echo(value)}\"")
    visible = list_images(ctx.cloud, ctx.farm_id)
    if image_ids:
        known = {image.id for image in visible}
        absent = [i for i in dict.fromkeys(image_ids) if i not in known]
        if absent:
            raise not_found("image", absent)
    ctx.proceed()
    with ctx.cloud.store.read() as session:
        tags = tags_of(session, ctx.farm_id, "image")
        shared = sharing.shared_with(session, [i.id for i in visible if i.owner_farm_id == ctx.farm_id])
    items = []
    for image in visible:
        if image_ids and image.id not in image_ids:
            continue
        owner = account_id(image.owner_farm_id) if image.owner_farm_id is not None else None
        item = image_item(image, owner, tags.get(image.id))
        if owners and not _owner_matches(owners, item["imageOwnerId"], ctx.owner_id):
            continue
        accounts = [account_id(f) for f in shared.get(image.id, [])]
        if not _executable_matches(users, bool(image.public), ctx.owner_id, accounts):
            continue
        if filters.match(item, tags.get(image.id)):
            items.append(item)
    chosen, token = pagination.paginate(items, lambda i: (i["imageId"],), page)
    return {"imagesSet": chosen, "nextToken": token}


@action("DescribeInstanceTypes")
def describe_instance_types(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The flavors as instance types."""
    names = p.strings("InstanceType", max_length=64)
    p.boolean("IncludeUnsupportedInRegion")
    page = pagination.read_page(p, 5, 100)
    filters = parse_filters(p, TYPE_FILTERS, tags=False)
    p.done()
    items = {flavor.name: instance_type_item(flavor) for flavor in list_flavors(ctx.cloud)}
    absent = [n for n in names if n not in items]
    if absent:
        raise Ec2Error("InvalidInstanceType",
                       f"The following supplied instance types do not exist: [{', '.join(echo(n) for n in absent)}]")
    ctx.proceed()
    chosen = [item for name, item in items.items() if (not names or name in names) and filters.match(item)]
    page_items, token = pagination.paginate(chosen, lambda t: (t["instanceType"],), page)
    return {"instanceTypeSet": page_items, "nextToken": token}
