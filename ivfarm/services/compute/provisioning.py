"""The slow part of an instance's life on its host: build disks, seed and domain; tear them down.

Each step registers its undo, so a failure removes what was made, marks the instance
terminated, and so releases its quota (usage is counted from states). The farm sees only
``LAUNCH_FAILED`` as the reason; the exception raised (and logged by the caller) has the detail.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from contextualization.metadata import meta_data, network_config_v2
from contextualization.seed import build_seed
from drivers.hypervisor.domain_xml import DomainSpec, Nic, VolumeDisk, render_domain
from drivers.storage.base import BaseImage, Disk, disk_names
from ivfarm.errors import InvalidState, IvfarmError, TransitionLost
from ivfarm.services.compute import instances, volume_work
from ivfarm.services.compute.instances import GIB, domain_name, get_instance, mjf_urls, set_state
from ivfarm.services.network import farm_network, firewall
from ivfarm.services.network.routers import sync_router
from ivfarm.services.network.segment_peers import sync_segment
from ivfarm.services.runtime import journal
from ivfarm.services.runtime.context import CloudContext
from ivfarm.store import jobs
from ivfarm.store.models import Address, Flavor, Image, KeyPair
from ivfarm.store.states import InstanceState as S
from ivfarm.store.transitions import compare_and_set

log = logging.getLogger(__name__)
LAUNCH_FAILED = "Server.InternalError: Internal error on launch"  # AWS's words; no host detail for tenants


@dataclass
class _Plan:
    """Everything provisioning needs, read in one transaction."""

    instance_id: str
    name: str
    uri: str
    host_class: str
    farm_name: str
    flavor: str
    image: BaseImage
    kernel: str | None
    initrd: str | None
    cmdline: str
    vcpus: int
    memory_mb: int
    ephemeral_gb: int
    root_bytes: int
    user_data: bytes | None
    public_keys: dict[str, str]
    nic: farm_network.InstanceNic | None
    public_nic: bool
    features: dict[str, str]  # machinefeatures / jobfeatures URLs for the seed's meta-data
    undo: list[Callable[[], None]] = field(default_factory=list)


def _plan(cloud: CloudContext, instance_id: str, pending: bool = True) -> _Plan:
    with cloud.store.read() as session:
        instance = get_instance(session, instance_id)
        if (pending and instance.state != S.PENDING) or instance.host is None:
            raise InvalidState(f"instance {instance_id} is {instance.state}, not pending on a host")
        image: Image = instance.image
        flavor = session.get(Flavor, instance.flavor_name)
        kernel = session.get(Image, image.kernel_id) if image.kernel_id else None
        ramdisk = session.get(Image, image.ramdisk_id) if image.ramdisk_id else None
        keys: dict[str, str] = {}
        if instance.key_name and instance.farm_id is not None:
            pair = session.query(KeyPair).filter_by(farm_id=instance.farm_id, name=instance.key_name).one_or_none()
            if pair is not None:
                keys[pair.name] = pair.public_key
        return _Plan(
            instance_id=instance.id,
            name=instance.name,
            uri=instance.host.uri,
            host_class=instance.host_class,
            farm_name=instance.farm.name if instance.farm else "",
            flavor=instance.flavor_name,
            image=BaseImage(image.id, image.path, image.disk_format, image.virtual_size_bytes, image.sha256),
            kernel=kernel.path if kernel else None,
            initrd=ramdisk.path if ramdisk else None,
            cmdline=image.cmdline or (kernel.cmdline if kernel else ""),
            vcpus=instance.vcpus,
            memory_mb=instance.memory_mb,
            ephemeral_gb=flavor.ephemeral_gb if flavor else 0,
            root_bytes=(instance.disk_gb - (flavor.ephemeral_gb if flavor else 0)) * GIB,
            user_data=instance.user_data,
            public_keys=keys,
            nic=farm_network.instance_nic(session, instance),
            public_nic=instance.public_nic,
            features=mjf_urls(cloud, instance.farm.router_backend) if instance.farm else {},
        )


def _seed(plan: _Plan) -> bytes:
    meta = meta_data(plan.instance_id, plan.name, plan.public_keys, **plan.features)
    network = None
    if plan.nic is not None:
        network = network_config_v2(plan.nic.mac, plan.nic.ip, plan.nic.prefix, plan.nic.gateway, [plan.nic.gateway])
    return build_seed(meta, plan.user_data, network)


def _build(cloud: CloudContext, plan: _Plan) -> None:
    storage = cloud.storage(plan.host_class)
    image = storage.prepare_image(plan.uri, plan.image)  # cached or copied where the host reads it
    root = storage.create_root(plan.uri, plan.instance_id, image, plan.root_bytes)
    plan.undo.append(lambda: storage.delete(plan.uri, root.name))
    disks: list[Disk] = [root]
    if plan.ephemeral_gb:
        ephemeral = storage.create_blank(plan.uri, disk_names(plan.instance_id)[1], plan.ephemeral_gb * GIB)
        plan.undo.append(lambda: storage.delete(plan.uri, ephemeral.name))
        disks.append(ephemeral)
    volumes = volume_work.build_for_launch(cloud, plan.instance_id, plan.uri, plan.undo)  # BlockDeviceMapping
    _define(cloud, plan, disks, start=True, volumes=volumes)


def _host_side(cloud: CloudContext, plan: _Plan) -> tuple[str, list[Nic]]:
    """The instance's seed, console directory and NICs on its host."""
    seed_path = cloud.seeds.write(plan.uri, f"{plan.instance_id}.iso", _seed(plan))
    plan.undo.append(lambda: cloud.seeds.delete(plan.uri, f"{plan.instance_id}.iso"))
    cloud.consoles.ensure_directory(plan.uri)
    plan.undo.append(lambda: cloud.consoles.delete(plan.uri, f"{plan.instance_id}.log"))
    nics: list[Nic] = []
    if plan.nic is not None:
        nics.append(farm_network.attach(cloud, plan.uri, plan.nic))
        plan.undo.append(lambda: firewall.remove(cloud, plan.uri, plan.instance_id))
    if plan.public_nic:
        nics.append(farm_network.public_nic(cloud, plan.uri, plan.instance_id, plan.host_class))
    return seed_path, nics


def _define(cloud: CloudContext, plan: _Plan, disks: list[Disk], start: bool,
            volumes: list[VolumeDisk] | None = None) -> None:
    seed_path, nics = _host_side(cloud, plan)
    if volumes is None:  # a redefinition keeps the attached volumes this host reaches
        volumes = volume_work.attached_disks(cloud, plan.instance_id, plan.uri)
    features = cloud.hypervisor.features(plan.uri)
    spec = DomainSpec(
        name=domain_name(plan.instance_id), instance_id=plan.instance_id, cloud=cloud.cloud_id, farm=plan.farm_name,
        flavor=plan.flavor, image_id=plan.image.image_id, vcpus=plan.vcpus, memory_mb=plan.memory_mb,
        domain_type=features.domain_type, machine=cloud.config.get("hypervisor.machine"),
        kernel=plan.kernel, initrd=plan.initrd, cmdline=plan.cmdline, disks=tuple(disks), volumes=tuple(volumes),
        seed=seed_path,
        nics=tuple(nics), console_log=cloud.consoles.path(f"{plan.instance_id}.log"),
    )
    cloud.hypervisor.define_and_start(plan.uri, render_domain(spec), start)
    plan.undo.append(lambda: cloud.hypervisor.undefine(plan.uri, domain_name(plan.instance_id)))


def base_image(cloud: CloudContext, instance_id: str) -> BaseImage:
    """The machine image an existing instance was built from, as storage needs it."""
    return _plan(cloud, instance_id, pending=False).image


def prepare_host(cloud: CloudContext, instance_id: str) -> None:
    """Put an existing instance's seed, console directory and farm segment on the host the store
    places it on, so a live migration can land there."""
    _host_side(cloud, _plan(cloud, instance_id, pending=False))


def redefine(cloud: CloudContext, instance_id: str, disks: list[Disk], start: bool) -> None:
    """Define (and start) an existing instance on the host the store places it on, with disks already
    there (cold migration, failover); what it made is removed again if it fails."""
    plan = _plan(cloud, instance_id, pending=False)
    try:
        _define(cloud, plan, disks, start)
    except Exception:
        _rollback(plan)
        raise


def finish_start(cloud: CloudContext, instance_id: str) -> None:
    """Start a pending (was stopped) instance; a domain ModifyInstanceAttribute changed (size, user data) is
    made again first from the store, with the disks it has, and a new seed."""
    with cloud.store.read() as session:
        instance = get_instance(session, instance_id)
        redefine_first = instance.redefine_on_start and instance.host is not None
    if redefine_first:
        plan = _plan(cloud, instance_id)
        storage = cloud.storage(plan.host_class)
        disks = [storage.disk(plan.uri, name) for name in disk_names(instance_id) if storage.exists(plan.uri, name)]
        try:
            cloud.hypervisor.undefine(plan.uri, domain_name(instance_id))
            _define(cloud, plan, disks, start=False)
        except Exception:
            set_state(cloud, instance_id, S.STOPPED, "Server.InternalError: start failed", expect=(S.PENDING,))
            raise
        with cloud.store.write() as session:
            get_instance(session, instance_id).redefine_on_start = False
    instances.finish_start(cloud, instance_id)


def start(cloud: CloudContext, instance_id: str, farm_id: int | None = None) -> None:
    """Start a stopped instance now (capacity and quota checked again; its domain made again if changed)."""
    instances.begin_start(cloud, instance_id, farm_id)
    finish_start(cloud, instance_id)


def _rollback(plan: _Plan) -> None:
    for step in reversed(plan.undo):
        try:
            step()
        except Exception:  # noqa: BLE001 - keep undoing the rest, report each failure
            log.exception("rollback step failed for %s", plan.instance_id)


def provision(cloud: CloudContext, instance_id: str) -> None:
    """Build and start a pending instance; on failure undo everything and mark it terminated.

    The end is a compare-and-set from pending: if the instance was terminated (or stopped by a
    host failure) while it was being built, that state wins and what was built is removed again.
    """
    plan = _plan(cloud, instance_id)
    try:
        _build(cloud, plan)
    except Exception as exc:
        _rollback(plan)
        volume_work.launched(cloud, instance_id, ok=False)
        try:
            set_state(cloud, instance_id, S.TERMINATED, LAUNCH_FAILED, expect=(S.PENDING,))
        except TransitionLost as lost:  # terminated meanwhile: that is why the build failed, and it stays
            log.info("provisioning of %s gave way: %s", instance_id, lost)
            return
        finally:
            if plan.nic is not None:
                farm_network.detach(cloud, plan.nic)
        if isinstance(exc, IvfarmError):
            raise
        raise IvfarmError(f"provisioning {instance_id} failed: {exc}") from exc
    try:
        set_state(cloud, instance_id, S.RUNNING, expect=(S.PENDING,))
        volume_work.launched(cloud, instance_id, ok=True)
    except TransitionLost as lost:  # terminated (or failed over) while we were building it
        log.info("provisioning of %s gave way: %s; removing what it built", instance_id, lost)
        _rollback(plan)
        volume_work.launched(cloud, instance_id, ok=False)
        if plan.nic is not None:
            farm_network.detach(cloud, plan.nic)
        if lost.found not in (S.SHUTTING_DOWN, S.TERMINATED):
            raise


def begin_terminate(cloud: CloudContext, instance_id: str, farm_id: int | None = None, queue: bool = False) -> str:
    """Mark an instance shutting-down (this process owning its teardown; with ``queue``, a
    terminate job is queued by the same transaction); returns its previous state (terminated
    stays terminated)."""
    with cloud.store.write() as session:
        instance = get_instance(session, instance_id, farm_id)
        try:
            previous = str(compare_and_set(session, instance_id, S.SHUTTING_DOWN, owner=journal.me()))
        except TransitionLost as lost:
            return lost.found  # only terminated cannot become shutting-down
        if queue:
            jobs.enqueue(session, "terminate", instance_id=instance_id, farm_id=instance.farm_id,
                         host_id=instance.host_id)
    journal.watch(cloud)
    return previous


def teardown(cloud: CloudContext, instance_id: str,
             reason: str = "Client.UserInitiatedShutdown: User initiated shutdown", sync: bool = True) -> list[int]:
    """Remove the domain, disks, seed, console log and network bindings; mark terminated (by
    compare-and-set from shutting-down: begin_terminate first). Returns the farms whose routers
    this changes, synced here unless ``sync`` is False (the provisioner syncs a batch once)."""
    with cloud.store.read() as session:
        instance = get_instance(session, instance_id)
        uri = instance.host.uri if instance.host else None
        host_class = instance.host_class
        nic = farm_network.instance_nic(session, instance)
        farms = set(session.scalars(select(Address.farm_id).where(Address.instance_id == instance_id)))
    if uri is not None:
        cloud.hypervisor.undefine(uri, domain_name(instance_id))
        firewall.remove(cloud, uri, instance_id)
        storage = cloud.storage(host_class)
        for name in disk_names(instance_id):
            storage.delete(uri, name)
        cloud.seeds.delete(uri, f"{instance_id}.iso")
        cloud.consoles.delete(uri, f"{instance_id}.log")
    volume_work.release(cloud, instance_id, uri)  # DeleteOnTermination volumes go, the others stay
    try:  # elastic IPs are disassociated by the same transaction
        set_state(cloud, instance_id, S.TERMINATED, reason, expect=(S.SHUTTING_DOWN,))
    except TransitionLost as lost:
        if lost.found != S.TERMINATED:
            raise
        log.info("teardown of %s: another process finished it first", instance_id)
    if nic is not None:
        farms.add(nic.farm_id)
        firewall.refresh_farm(cloud, nic.farm_id)  # its address leaves the groups it was in
        sync_segment(cloud, nic.farm_id)  # no host forwards its MAC any more
    for farm_id in sorted(farms) if sync else ():
        sync_router(cloud, farm_id)
    return sorted(farms)


def terminate(cloud: CloudContext, instance_id: str, farm_id: int | None = None) -> None:
    """Terminate an instance now (the CLI's way; the EC2 facade runs teardown in the background)."""
    if begin_terminate(cloud, instance_id, farm_id) != S.TERMINATED:
        teardown(cloud, instance_id)
