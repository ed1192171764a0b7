"""RunInstances, DescribeInstances and DescribeInstanceStatus."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ivfarm import ids
from ivfarm.ec2 import pagination
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, combination, echo, invalid_value, malformed
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import id_list, tag_specifications, visible_seconds
from ivfarm.ec2.handlers.metadata_options import read_options
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import (
    attachments,
    boot_images,
    check_ids,
    placement_group_names,
    public_ips,
    require_instances,
    tags_of,
    visible_instances,
)
from ivfarm.ec2.registry import action
from ivfarm.ec2.serializer import timestamp
from ivfarm.ec2.views.common import STATE_CODES, ec2_state
from ivfarm.ec2.views.instances import ROOT_DEVICE, Related, reservation, reservations, status_item
from ivfarm.errors import NotFound, PoolExhausted
from ivfarm.services.compute import instances, launch_volumes, volume_records
from ivfarm.services.tenancy import security_groups
from ivfarm.store.models import Instance, KeyPair

MAX_BATCH = 1000
USER_DATA_LIMIT = 16 * 1024
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_EPHEMERAL = re.compile(r"ephemeral[0-9]{1,2}")
ROOT_DEVICES = (ROOT_DEVICE, "/dev/sda", "/dev/sda1", "/dev/xvda")


class Candidate(NamedTuple):
    """An instance row with what filters on it need."""

    row: Any
    related: Related


INSTANCE_FILTERS = documented("DescribeInstances", {
    "instance-id": lambda c: (c.row.id,),
    "instance-state-name": lambda c: (ec2_state(c.row.state),),
    "instance-state-code": lambda c: (str(STATE_CODES[ec2_state(c.row.state)]),),
    "instance-type": lambda c: (c.row.flavor_name,),
    "image-id": lambda c: (c.row.image_id,),
    "private-ip-address": lambda c: (c.row.ip,),
    "ip-address": lambda c: (c.related.public_ips.get(c.row.id),),
    "availability-zone": lambda c: (c.related.zone_for(c.row.host_class),),
    "key-name": lambda c: (c.row.key_name,),
    "reservation-id": lambda c: (c.row.reservation_id,),
    "client-token": lambda c: (c.row.client_token,),
    "ami-launch-index": lambda c: (str(c.row.launch_index),),
    "launch-index": lambda c: (str(c.row.launch_index),),
    "network-interface.mac-address": lambda c: (c.row.mac,),
    "architecture": lambda c: ("x86_64",),
    "root-device-type": lambda c: ("ebs",),
    "virtualization-type": lambda c: ("hvm",),
    "hypervisor": lambda c: ("kvm",),
    "tenancy": lambda c: ("default",),
    "kernel-id": lambda c: (c.related.boot.get(c.row.image_id, (None, None))[0],),
    "ramdisk-id": lambda c: (c.related.boot.get(c.row.image_id, (None, None))[1],),
    "instance.group-id": lambda c: [g for g, _ in c.related.groups.get(c.row.id, ())],
    "instance.group-name": lambda c: [n for _, n in c.related.groups.get(c.row.id, ())],
    "group-id": lambda c: [g for g, _ in c.related.groups.get(c.row.id, ())],
    "group-name": lambda c: [n for _, n in c.related.groups.get(c.row.id, ())],
    "vpc-id": lambda c: (c.related.vpc_id,),
    "subnet-id": lambda c: (c.related.subnet_id,),
    "owner-id": lambda c: (c.related.owner_id,),
    "network-interface.vpc-id": lambda c: (c.related.vpc_id,),
    "network-interface.subnet-id": lambda c: (c.related.subnet_id,),
    "instance-initiated-shutdown-behavior": lambda c: (c.row.shutdown_behavior,),
    "launch-time": lambda c: (timestamp(c.row.launched_at or c.row.created_at),),
    "monitoring-state": lambda c: ("disabled",),
    "reason": lambda c: (c.row.state_reason,),
    "root-device-name": lambda c: (ROOT_DEVICE,),
    "placement-group-name": lambda c: (c.related.placement_groups.get(c.row.placement_group_id or ""),),
})
STATUS_FILTERS = documented("DescribeInstanceStatus", {
    "availability-zone": INSTANCE_FILTERS["availability-zone"],
    "instance-state-name": INSTANCE_FILTERS["instance-state-name"],
    "instance-state-code": INSTANCE_FILTERS["instance-state-code"],
    "system-status.status": lambda c: (_health(c.row.state),),
    "instance-status.status": lambda c: (_health(c.row.state),),
    "system-status.reachability": lambda c: (_reachability(c.row.state),),
    "instance-status.reachability": lambda c: (_reachability(c.row.state),),
})


def _health(state: str) -> str:
    return {"running": "ok", "pending": "initializing"}.get(ec2_state(state), "not-applicable")


def _reachability(state: str) -> str | None:
    return {"ok": "passed", "initializing": "initializing"}.get(_health(state))


def user_data_param(raw: str | None) -> bytes | None:
    if not raw:
        return None
    try:
        data = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data") from exc
    if len(data) > USER_DATA_LIMIT:
        raise Ec2Error("InvalidParameterValue", f"User data is limited to {USER_DATA_LIMIT} bytes")
    return data


def _block_devices(p: Params) -> tuple[int | None, list[launch_volumes.ExtraVolume]]:
    """``BlockDeviceMapping.N``: the root disk's size, extra volumes, the flavor's ephemeral disks."""
    root: int | None = None
    extra: list[launch_volumes.ExtraVolume] = []
    for mapping in p.structs("BlockDeviceMapping"):
        device = mapping.required("DeviceName", max_length=32)
        virtual = mapping.string("VirtualName", max_length=32)
        skip = mapping.has("NoDevice")
        mapping.string("NoDevice", max_length=8)
        ebs = mapping.struct("Ebs")
        size = ebs.integer("VolumeSize", minimum=1, maximum=volume_records.MAX_SIZE_GB)
        snapshot = ebs.string("SnapshotId", max_length=64)
        remove = ebs.boolean("DeleteOnTermination", default=True)
        volume_type = ebs.choice("VolumeType", volume_records.VOLUME_TYPES) or "gp2"
        ebs.integer("Iops", minimum=0)
        ebs.integer("Throughput", minimum=0)
        if ebs.boolean("Encrypted"):
            raise Ec2Error("InvalidParameterValue", "Encrypted volumes are not supported here")
        if skip:
            continue
        if virtual is not None:  # the flavor's ephemeral disk (vdb): always there when the flavor has one
            if not _EPHEMERAL.fullmatch(virtual):
                raise invalid_value("BlockDeviceMapping.VirtualName", virtual, "expected ephemeralN")
            continue
        if device in ROOT_DEVICES:
            if snapshot is not None:
                raise Ec2Error("InvalidParameterValue", "The root volume comes from the image, not a snapshot")
            root = size
            continue
        if snapshot is not None:
            check_ids("snapshot", [snapshot])
        if size is None and snapshot is None:
            raise Ec2Error("MissingParameter", f"The request must contain the parameter size or snapshotId for {echo(device)}")
        extra.append(launch_volumes.ExtraVolume(device, size, snapshot, remove, volume_type))
    return root, extra


def _launch_request(ctx: RequestContext, p: Params) -> instances.LaunchRequest:
    image_id = p.required("ImageId", max_length=64)
    flavor = p.string("InstanceType", max_length=64) or "m1.small"
    min_count = p.required_integer("MinCount", minimum=1, maximum=MAX_BATCH)
    max_count = p.required_integer("MaxCount", minimum=1, maximum=MAX_BATCH)
    key_name = p.string("KeyName", max_length=255)
    user_data = user_data_param(p.string("UserData", max_length=USER_DATA_LIMIT * 2))
    client_token = p.string("ClientToken", max_length=64)
    placement = p.struct("Placement")
    zone = placement.string("AvailabilityZone", max_length=128)
    placement.choice("Tenancy", ("default",))
    placement_group = placement.string("GroupName", max_length=255)
    placement_group_id = placement.string("GroupId", max_length=64)
    group_names = p.strings("SecurityGroup", max_length=255)
    group_ids = check_ids("security_group", p.strings("SecurityGroupId", max_length=64))
    subnet = p.string("SubnetId", max_length=64)
    private_ip = p.string("PrivateIpAddress", max_length=64)
    behavior = p.choice("InstanceInitiatedShutdownBehavior", ("stop", "terminate"), default="stop")
    protected = p.boolean("DisableApiTermination")
    tags = tag_specifications(p, "instance")
    options = read_options(p.struct("MetadataOptions"))
    root_gb, volumes = _block_devices(p)
    p.done()
    if subnet is not None and subnet != ctx.subnet_id:
        raise Ec2Error("InvalidSubnetID.NotFound", f"The subnet ID '{echo(subnet)}' does not exist")
    if private_ip is not None and max_count != 1:
        raise combination("PrivateIpAddress can be given only when launching one instance")
    if placement_group is not None and placement_group_id is not None:
        raise combination("Placement.GroupName and Placement.GroupId cannot be given together")
    if placement_group_id is not None and not ids.is_valid(placement_group_id, "placement_group"):
        raise malformed("placement_group", placement_group_id)
    if min_count > max_count:
        raise invalid_value("MinCount", min_count, "MinCount must not be above MaxCount")
    if not ids.is_valid(image_id, "image"):
        raise Ec2Error("InvalidAMIID.Malformed", f'Invalid id: "{echo(image_id)}" (expecting "ami-...")')
    host_class = ctx.class_for_zone(zone) if zone else "worker"
    if host_class is None:
        raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{echo(zone)}]")
    name = tags.get("Name")
    return instances.LaunchRequest(
        image=image_id, flavor=flavor, host_class=host_class, count=max_count, min_count=min_count,
        name=name if name and _HOSTNAME.fullmatch(name) else None, farm_id=ctx.farm_id, key_name=key_name,
        user_data=user_data, client_token=client_token, metadata_options=options, tags=tags, dry_run=ctx.dry_run,
        group_ids=group_ids, group_names=group_names, private_ip=private_ip, shutdown_behavior=behavior or "stop",
        disable_api_termination=protected, request_id=ctx.request_id, root_gb=root_gb, volumes=volumes,
        placement_group=placement_group, placement_group_id=placement_group_id,
    )


def _check_references(ctx: RequestContext, request: instances.LaunchRequest) -> tuple[list[Instance], Related]:
    """Check the key pair; find what an earlier call with this ClientToken made; the image's kernel and ramdisk."""
    with ctx.cloud.store.read() as session:
        if request.key_name is not None and session.scalar(select(KeyPair.id).where(
                KeyPair.farm_id == ctx.farm_id, KeyPair.name == request.key_name)) is None:
            raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{echo(request.key_name)}' does not exist")
        earlier = list(session.scalars(select(Instance).where(
            Instance.farm_id == ctx.farm_id, Instance.client_token == request.client_token
        ).order_by(Instance.launch_index))) if request.client_token else []
        boot = boot_images(session, {request.image})
        groups = placement_group_names(session, ctx.farm_id)
    return earlier, Related(ctx.zone_for, {}, {}, boot, vpc_id=ctx.vpc_id, subnet_id=ctx.subnet_id, owner_id=ctx.owner_id,
                            placement_groups=groups)


def _launch(ctx: RequestContext, request: instances.LaunchRequest) -> list[Instance]:
    try:
        return instances.launch(ctx.cloud, request)
    except NotFound as exc:
        if exc.kind == "flavor":
            raise Ec2Error("InvalidParameterValue", f"Invalid value '{echo(request.flavor)}' for InstanceType.") from exc
        raise
    except PoolExhausted as exc:
        raise Ec2Error("InsufficientFreeAddressesInSubnet", "The farm's network has no free address left.") from exc
    except security_groups.GroupLimit as exc:
        raise Ec2Error("SecurityGroupsPerInstanceLimitExceeded",
                       f"The maximum number of security groups per instance ({exc.limit}) has been reached.") from exc
    except IntegrityError:
        if not request.client_token:
            raise
        return _check_references(ctx, request)[0]  # a concurrent call with the same ClientToken won


@action("RunInstances")
def run_instances(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Reserve, place and record instances as pending, with their provision jobs; a provisioner builds them."""
    request = _launch_request(ctx, p)
    earlier, related = _check_references(ctx, request)
    if earlier and (earlier[0].image_id != request.image or earlier[0].flavor_name != request.flavor):
        raise Ec2Error("IdempotentParameterMismatch",
                       "The client token was already used for a request with different parameters.")
    launched = earlier or _launch(ctx, request)  # under DryRun: checks image, quota and capacity only
    ctx.proceed()
    instance_ids = [i.id for i in launched]
    if earlier:
        rows, related = load_rows(ctx, instance_ids)
        return reservation(rows[0].reservation_id, rows, related, ctx.owner_id)
    with ctx.cloud.store.read() as session:
        related.groups = security_groups.memberships(session, ctx.farm_id, instance_ids)
        # stored by launch() in the same transaction as the instances (with the Machine/Job Features URLs)
        related.tags = tags_of(session, ctx.farm_id, "instance", instance_ids)
    return reservation(launched[0].reservation_id, launched, related, ctx.owner_id)


def load_rows(ctx: RequestContext, instance_ids: list[str]) -> tuple[list[Any], Related]:
    with ctx.cloud.store.read() as session:
        if instance_ids:
            rows = require_instances(session, ctx.farm_id, visible_seconds(ctx), instance_ids)
        else:
            rows = visible_instances(session, ctx.farm_id, visible_seconds(ctx))
        related = Related(ctx.zone_for, tags_of(session, ctx.farm_id, "instance", instance_ids or None),
                          public_ips(session, ctx.farm_id), boot_images(session, {r.image_id for r in rows}),
                          security_groups.memberships(session, ctx.farm_id, instance_ids or None),
                          vpc_id=ctx.vpc_id, subnet_id=ctx.subnet_id, owner_id=ctx.owner_id,
                          volumes=attachments(session, ctx.farm_id),
                          placement_groups=placement_group_names(session, ctx.farm_id))
    return rows, related


def _order(row: Any) -> tuple[str, ...]:
    return (row.created_at.isoformat(), row.id)


@action("DescribeInstances")
def describe_instances(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's instances grouped by reservation, with filters and pagination."""
    instance_ids = check_ids("instance", id_list(p, "InstanceId"))
    page = pagination.read_page(p, 5, 1000, exclusive=("InstanceId",))
    filters = parse_filters(p, INSTANCE_FILTERS)
    p.done()
    rows, related = load_rows(ctx, instance_ids)
    ctx.proceed()
    if filters:
        rows = [row for row in rows if filters.match(Candidate(row, related), related.tags.get(row.id))]
    chosen, token = pagination.paginate(rows, _order, page)
    return {"reservationSet": reservations(chosen, related, ctx.owner_id), "nextToken": token}


@action("DescribeInstanceStatus")
def describe_instance_status(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Health of running instances (of every instance with IncludeAllInstances=true)."""
    instance_ids = check_ids("instance", id_list(p, "InstanceId"))
    include_all = p.boolean("IncludeAllInstances")
    page = pagination.read_page(p, 5, 1000, exclusive=("InstanceId",))
    filters = parse_filters(p, STATUS_FILTERS, tags=False)
    p.done()
    rows, related = load_rows(ctx, instance_ids)
    ctx.proceed()
    rows = [row for row in rows if (include_all or ec2_state(row.state) == "running")
            and filters.match(Candidate(row, related))]
    chosen, token = pagination.paginate(rows, _order, page)
    return {"instanceStatusSet": [status_item(row, ctx.zone_for(row.host_class)) for row in chosen],
            "nextToken": token}
