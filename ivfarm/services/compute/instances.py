"""Instance lifecycle: launch (reserve + schedule), stop, start, reboot, terminate, console.

``launch`` does only the fast part inside one transaction (checks, quota, placement, rows in
``pending``); ``ivfarm.services.compute.provisioning`` does the slow part on the host.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import InvalidInput, InvalidState, NotFound, Unavailable
from ivfarm.services.compute import launch_volumes, metadata_options, placement_groups
from ivfarm.services.compute.hosts import capacities
from ivfarm.services.compute.metadata_options import MetadataOptions
from ivfarm.services.compute.scheduler import Request, Scheduler
from ivfarm.services.images import sharing
from ivfarm.services.images.catalog import find_image
from ivfarm.services.network import addressing, farm_network
from ivfarm.services.network.machine_features import feature_urls
from ivfarm.services.network.routers import sync_router
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.naming import DOMAIN_PREFIX
from ivfarm.services.tenancy import quotas, security_groups
from ivfarm.services.tenancy.tags import MAX_TAGS, add_tags
from ivfarm.store import jobs
from ivfarm.store.models import (
    HOST_CLASSES,
    IN_FLIGHT,
    LIVE_STATES,
    Flavor,
    Host,
    Image,
    Instance,
    PlacementGroup,
    utcnow,
)
from ivfarm.store.states import InstanceState as S
from ivfarm.store.transitions import compare_and_set

GIB = 1024**3


def domain_name(instance_id: str) -> str:
    """The libvirt domain name of an instance."""
    return DOMAIN_PREFIX + instance_id


@dataclass
class LaunchRequest:
    """What RunInstances or ``vm run`` asks for."""

    image: str
    flavor: str
    host_class: str = "worker"
    count: int = 1
    min_count: int | None = None
    name: str | None = None
    farm_id: int | None = None
    key_name: str | None = None
    user_data: bytes | None = None
    client_token: str | None = None
    request_id: str = ""  # the API request that asked, named in the provisioner's log
    public_nic: bool = False
    restart_policy: str = "none"
    metadata_options: MetadataOptions = MetadataOptions()  # unset ones: the site default
    tags: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    group_ids: list[str] = field(default_factory=list)  # security groups; none: the farm's default
    group_names: list[str] = field(default_factory=list)
    private_ip: str | None = None  # the farm address to take (one instance only)
    shutdown_behavior: str = "stop"  # what a poweroff from inside the guest does: stop | terminate
    disable_api_termination: bool = False  # TerminateInstances refuses the instance while set
    root_gb: int | None = None  # the root disk's size (BlockDeviceMapping of the root device); None: the flavor's
    volumes: list[launch_volumes.ExtraVolume] = field(default_factory=list)
    placement_group: str | None = None  # a spread placement group of the farm, by name
    placement_group_id: str | None = None  # ... or by id


def disk_gb_for(image: Image, flavor: Flavor) -> int:
    """Disk an instance may grow to: its root disk (at least the image) plus ephemeral storage."""
    root = max(flavor.root_gb, math.ceil(image.virtual_size_bytes / GIB))
    return root + flavor.ephemeral_gb


def visible_image(session: Session, ref: str, farm_id: int | None) -> Image:
    """An available image a farm may launch (public, its own or shared with it); admins (no farm) may
    launch any available one."""
    image = find_image(session, ref) if farm_id is None else sharing.visible_image(session, ref, farm_id)
    if image.state != "available":
        raise Unavailable("image", ref, f"is {image.state}")
    if image.kind != "machine":
        raise InvalidInput(f"image {ref!r} is a {image.kind} image; launch a machine image")
    return image


def get_instance(session: Session, instance_id: str, farm_id: int | None = None) -> Instance:
    """An instance by id (scoped to a farm when given) or NotFound."""
    instance = session.get(Instance, instance_id)
    if instance is None or (farm_id is not None and instance.farm_id != farm_id):
        raise NotFound("instance", instance_id)
    return instance


def find_instance(session: Session, ref: str) -> Instance:
    """An instance by id or by name (the newest live one with that name)."""
    instance = session.get(Instance, ref)
    if instance is None:
        instance = session.scalar(
            select(Instance).where(Instance.name == ref, Instance.state != S.TERMINATED)
            .order_by(Instance.created_at.desc()).limit(1)
        )
    if instance is None:
        raise NotFound("instance", ref)
    return instance


def modify_metadata_options(cloud: CloudContext, farm_id: int, instance_id: str,
                            changes: MetadataOptions) -> MetadataOptions:
    """Change a live instance's metadata options; its farm router's metadata service applies them at once."""
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id, farm_id)
        if instance.state not in LIVE_STATES:
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        options = changes.over(metadata_options.of(instance))
        metadata_options.store(instance, options)
    sync_router(cloud, farm_id)
    return options


def _placed_host(session: Session, instance_id: str) -> Host:
    """The host an instance is placed on (InvalidState when on none)."""
    instance = get_instance(session, instance_id)
    if instance.host is None:
        raise InvalidState(f"instance {instance_id} is on no host")
    return instance.host


def find_instance_host(cloud: CloudContext, instance_id: str) -> str:
    """The name of the host an instance is placed on."""
    with cloud.store.read() as session:
        return _placed_host(session, instance_id).name


def launch(cloud: CloudContext, request: LaunchRequest) -> list[Instance]:
    """Check, reserve quota, place and record instances as ``pending``; all or nothing."""
    if request.host_class not in HOST_CLASSES:
        raise InvalidInput(f"host class must be one of {', '.join(HOST_CLASSES)}")
    if request.count < 1 or request.count > 1000:
        raise InvalidInput("the instance count must be between 1 and 1000")
    if request.public_nic and request.host_class != "service":
        raise InvalidInput("only service-class instances may have a public NIC")
    if request.public_nic:
        farm_network.public_bridge(cloud)  # refuses a namespace-only public segment up front
    with cloud.store.write() as session:
        if request.client_token and request.farm_id is not None:
            existing = list(session.scalars(
                select(Instance).where(Instance.farm_id == request.farm_id, Instance.client_token == request.client_token)
                .order_by(Instance.launch_index)
            ))
            if existing:
                return existing
        image = visible_image(session, request.image, request.farm_id)
        flavor = session.get(Flavor, request.flavor)
        if flavor is None:
            raise NotFound("flavor", request.flavor)
        disk_gb = disk_gb_for(image, flavor)
        if request.root_gb is not None:
            if request.root_gb < disk_gb - flavor.ephemeral_gb:
                raise InvalidInput(f"Volume of size {request.root_gb}GiB is smaller than the image's "
                                   f"{disk_gb - flavor.ephemeral_gb}GiB")
            disk_gb = request.root_gb + flavor.ephemeral_gb
        farm = cloud.store.lock_farm(session, request.farm_id) if request.farm_id is not None else None
        count = request.count
        groups: list[str] = []
        if farm is not None:
            if farm.status != "active":
                raise InvalidState(f"farm {farm.name} is {farm.status}: no new instances")
            groups = security_groups.resolve_groups(cloud, session, farm.id, request.group_ids, request.group_names)
            count = quotas.admissible_count(session, farm, flavor.vcpus, flavor.memory_mb, disk_gb,
                                            request.count, request.min_count or request.count)
        planned = launch_volumes.plan(cloud, session, request.farm_id, request.host_class, request.volumes)
        if farm is not None and planned.volumes:
            quotas.check_volumes(session, farm, count * len(planned.volumes), count * planned.size_gb)
        cloud.store.lock_scheduler(session)
        group = _placement_group(session, request)
        avoid = placement_groups.member_hosts(session, group.id) if group is not None else set()
        hosts = [h for h in capacities(cloud, session, request.host_class)
                 if (planned.host is None or h.name == planned.host) and h.name not in avoid]
        wanted = Request(flavor.vcpus, flavor.memory_mb, disk_gb, request.host_class)
        placed = Scheduler.from_config(cloud.config).place([wanted] * count, hosts, distinct=group is not None)
        if request.dry_run:
            return []
        host_ids = {h.name: h.id for h in session.scalars(select(Host))}
        options = request.metadata_options.over(metadata_options.site_default(cloud))
        addresses = (addressing.allocate(session, farm, count, request.private_ip) if farm is not None
                     else [None] * count)
        reservation = ids.new_id("reservation")
        now = utcnow()
        instances = []
        for index, (host, address) in enumerate(zip(placed, addresses, strict=True)):
            instance_id = ids.new_id("instance")
            instance = Instance(
                id=instance_id,
                name=request.name if request.name and count == 1 else
                (f"{request.name}-{index}" if request.name else instance_id),
                farm_id=request.farm_id, image_id=image.id, flavor_name=flavor.name,
                host_class=request.host_class, host_id=host_ids[host.name], state=S.PENDING.value,
                vcpus=flavor.vcpus, memory_mb=flavor.memory_mb, disk_gb=disk_gb,
                ip=address.ip if address else None, mac=address.mac if address else None,
                public_nic=request.public_nic, key_name=request.key_name, user_data=request.user_data,
                client_token=request.client_token, reservation_id=reservation, launch_index=index,
                restart_policy=request.restart_policy, shutdown_behavior=request.shutdown_behavior,
                disable_api_termination=request.disable_api_termination,
                placement_group_id=group.id if group is not None else None,
                owner=journal.me(), heartbeat_at=now,
            )
            metadata_options.store(instance, options)
            session.add(instance)
            instances.append(instance)
        session.flush()
        jobs.enqueue_many(session, "provision", [
            {"instance_id": i.id, "farm_id": request.farm_id, "host_id": i.host_id,
             "payload": {"request": request.request_id}} for i in instances])
        for instance in instances:
            launch_volumes.record(session, instance, planned)
        security_groups.join_groups(session, [i.id for i in instances], groups)
        if farm is not None:
            tags = {**mjf_urls(cloud, farm.router_backend), **request.tags}
            if len(tags) > MAX_TAGS >= len(request.tags):  # the tenant's 50 tags leave no room: theirs only
                tags = dict(request.tags)
            add_tags(session, farm.id, {i.id: "instance" for i in instances}, tags)
    journal.watch(cloud)  # their heartbeat, until each is built or given up
    return instances


def _placement_group(session: Session, request: LaunchRequest) -> PlacementGroup | None:
    """The farm's placement group the request names (NotFound when it has none such), or None."""
    if request.placement_group is None and request.placement_group_id is None:
        return None
    if request.farm_id is None:
        raise InvalidInput("placement groups belong to farms")
    return placement_groups.find(session, request.farm_id, request.placement_group, request.placement_group_id)


def mjf_urls(cloud: CloudContext, router_backend: str) -> dict[str, str]:
    """``machinefeatures`` / ``jobfeatures`` -> the URLs of the farm router's Machine/Job Features
    when that router serves them (else nothing): tags at launch (as Vcycle tags its VMs; the
    tenant's own tags win) and keys of the NoCloud meta-data."""
    backend = cloud.router_backend(router_backend)
    return feature_urls() if backend is not None and backend.serves_metadata else {}


def set_state(cloud: CloudContext, instance_id: str, state: str, reason: str = "",
              expect: Sequence[str] | None = None) -> str:
    """Move an instance to ``state`` by compare-and-set in its own transaction (from one of
    ``expect``, default any state the table allows); returns the state it left. Raises
    ``TransitionLost`` when it lost a race (the winner's state is left as it is)."""
    with cloud.store.write() as session:
        previous = compare_and_set(session, instance_id, state, expect=expect, reason=reason, owner=journal.me())
    if state in IN_FLIGHT:
        journal.watch(cloud)
    return str(previous)


def _transition(cloud: CloudContext, instance_id: str, allowed: Sequence[str], new_state: str,
                farm_id: int | None, job: dict[str, Any] | None = None) -> tuple[Instance, Host | None]:
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id, farm_id)
        if instance.state not in allowed:
            raise InvalidState(f"instance {instance_id} is {instance.state}; this needs it to be {' or '.join(allowed)}")
        compare_and_set(session, instance_id, new_state, expect=allowed, owner=journal.me())
        if job is not None:  # the work is queued by the transaction that decided it
            jobs.enqueue(session, str(job["kind"]), instance_id=instance_id, farm_id=instance.farm_id,
                         host_id=instance.host_id, payload=job)
        host = session.get(Host, instance.host_id) if instance.host_id else None
    journal.watch(cloud)
    return instance, host


def stop(cloud: CloudContext, instance_id: str, force: bool = False, farm_id: int | None = None) -> None:
    """Shut an instance down; its disk stays on its host. Raises ``TransitionLost`` if it was
    terminated (or otherwise changed) meanwhile: that state is kept."""
    instance, host = _transition(cloud, instance_id, (S.RUNNING, S.REBOOTING, S.STOPPING), S.STOPPING, farm_id)
    if host is not None:
        cloud.hypervisor.stop(host.uri, domain_name(instance.id), force=force,
                              timeout_s=float(cloud.config.get("hypervisor.shutdown_timeout_s")))
    set_state(cloud, instance.id, S.STOPPED, "User initiated", expect=(S.STOPPING,))


def begin_stop(cloud: CloudContext, instance_id: str, farm_id: int | None = None, force: bool = False) -> None:
    """Mark a running instance ``stopping`` and queue its stop job (the EC2 facade answers at once)."""
    _transition(cloud, instance_id, (S.RUNNING, S.REBOOTING, S.STOPPING), S.STOPPING, farm_id,
                job={"kind": "stop", "force": force})


def begin_start(cloud: CloudContext, instance_id: str, farm_id: int | None = None, queue: bool = False) -> None:
    """Check capacity and quota again and mark a stopped instance ``pending``; with ``queue``, its
    start job is queued by the same transaction (else call ``finish_start``)."""
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id, farm_id)
        if instance.state != S.STOPPED:
            raise InvalidState(f"instance {instance_id} is {instance.state}; only stopped instances start")
        if instance.farm_id is not None:
            quotas.check_start(session, cloud.store.lock_farm(session, instance.farm_id), instance)
        cloud.store.lock_scheduler(session)
        host = instance.host
        if host is None:
            raise InvalidState(f"instance {instance_id} is on no host")
        capacity = next(c for c in capacities(cloud, session, host.host_class) if c.name == host.name)
        if not capacity.fits(Request(instance.vcpus, instance.memory_mb, 0, instance.host_class)):
            raise InvalidState(f"host {host.name} has no room to start {instance_id} now")
        compare_and_set(session, instance_id, S.PENDING, expect=(S.STOPPED,), reason="", owner=journal.me())
        if queue:
            jobs.enqueue(session, "start", instance_id=instance_id, farm_id=instance.farm_id, host_id=host.id)
    journal.watch(cloud)


def finish_start(cloud: CloudContext, instance_id: str) -> None:
    """Start the domain of an instance ``begin_start`` made pending; back to stopped if that fails."""
    uri = _host_uri(cloud, instance_id)
    try:
        cloud.hypervisor.start(uri, domain_name(instance_id))
    except Exception:
        set_state(cloud, instance_id, S.STOPPED, "Server.InternalError: start failed", expect=(S.PENDING,))
        raise
    set_state(cloud, instance_id, S.RUNNING, expect=(S.PENDING,))  # unless terminated meanwhile


def start(cloud: CloudContext, instance_id: str, farm_id: int | None = None) -> None:
    """Start a stopped instance on its host now (capacity and quota are checked again)."""
    begin_start(cloud, instance_id, farm_id)
    finish_start(cloud, instance_id)


def _host_uri(cloud: CloudContext, instance_id: str) -> str:
    with cloud.store.read() as session:
        return _placed_host(session, instance_id).uri


def begin_reboot(cloud: CloudContext, instance_id: str, farm_id: int | None = None, queue: bool = False) -> None:
    """Mark a running instance ``rebooting``; with ``queue``, its reboot job is queued by the same
    transaction (else call ``finish_reboot``)."""
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id, farm_id)
        if instance.state != S.RUNNING:
            raise InvalidState(f"instance {instance_id} is {instance.state}; only running instances reboot")
        if instance.host is None:
            raise InvalidState(f"instance {instance_id} is on no host")
        compare_and_set(session, instance_id, S.REBOOTING, expect=(S.RUNNING,), owner=journal.me())
        if queue:
            jobs.enqueue(session, "reboot", instance_id=instance_id, farm_id=instance.farm_id,
                         host_id=instance.host_id)
    journal.watch(cloud)


def finish_reboot(cloud: CloudContext, instance_id: str) -> None:
    """Reboot the domain of an instance ``begin_reboot`` marked; back to running either way."""
    try:
        cloud.hypervisor.reboot(_host_uri(cloud, instance_id), domain_name(instance_id))
    finally:  # back up (or still up); a stop or terminate that came meanwhile keeps its state
        set_state(cloud, instance_id, S.RUNNING, expect=(S.REBOOTING,))


def reboot(cloud: CloudContext, instance_id: str, farm_id: int | None = None) -> None:
    """Reboot a running instance now (``rebooting`` while the hypervisor does it)."""
    begin_reboot(cloud, instance_id, farm_id)
    finish_reboot(cloud, instance_id)


def console_output(cloud: CloudContext, instance_id: str, farm_id: int | None = None, limit: int = 64 * 1024) -> bytes:
    """The last ``limit`` bytes of the instance's serial console log."""
    with cloud.store.read() as session:
        instance = get_instance(session, instance_id, farm_id)
        uri = instance.host.uri if instance.host else None
    if uri is None:
        return b""
    return cloud.consoles.read(uri, f"{instance_id}.log")[-limit:]
