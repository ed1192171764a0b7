"""The typed schema of the ivfarm configuration: every key, its type, allowed values and default.

Each section forbids unknown keys and validates strictly (a string is never taken for a number,
a list stays a list); IP addresses and networks stay strings, checked to parse. ``Settings()``
is the built-in default tree.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError


def _number(value: Any) -> float:
    # an int stays an int (30 is shown as 30, not 30.0); bools and strings are refused
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "expected a number")
    return value


def _path_as_str(value: Any) -> Any:
    # Python callers may pass Path objects; the tree keeps plain strings
    return str(value) if isinstance(value, PurePath) else value


def _ipv4_network(value: str) -> str:
    try:
        ipaddress.IPv4Network(value)
    except ValueError:
        raise PydanticCustomError("ipv4_network", "expected an IPv4 network with no host bits set, "
                                                  "such as 10.64.0.0/12") from None
    return value


def _ipv4_address(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise PydanticCustomError("ipv4_address", "expected an IPv4 address such as 198.51.100.1") from None
    return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("ip_address", "expected an IP address such as 198.51.100.1") from None
    return value


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise PydanticCustomError("ip_network", "expected an IP network such as 192.0.2.0/24") from None
    return value


def _networks(value: Any) -> Any:
    # one network or a list of them, kept as given
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise PydanticCustomError("networks_type", "expected an IP network or a list of them")
    for item in items:
        _ip_network(item)
    return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise PydanticCustomError("listen_address", "expected HOST:PORT such as 127.0.0.1:8773")
    return value


def _cloud_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise PydanticCustomError("cloud_id", "expected a name of letters, digits, '.', '_' and '-' "
                                              "(it names storage pools)")
    return value


def _database_url(value: str) -> str:
    if "://" not in value:
        raise PydanticCustomError("database_url", "expected an SQLAlchemy URL such as "
                                                  "postgresql+psycopg://ivfarm@db/ivfarm")
    return value


Number = Annotated[float, PlainValidator(_number), Field(ge=0)]
PositiveNumber = Annotated[float, PlainValidator(_number), Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveCount = Annotated[int, Field(ge=1)]
Name = Annotated[str, Field(min_length=1)]
PathStr = Annotated[str, BeforeValidator(_path_as_str), Field(min_length=1)]
Ipv4Network = Annotated[str, AfterValidator(_ipv4_network)]
Ipv4Address = Annotated[str, AfterValidator(_ipv4_address)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]
Networks = Annotated[str | list[str], PlainValidator(_networks)]
VlanId = Annotated[int, Field(ge=1, le=4094)]


class Section(BaseModel):
    """A mapping of the configuration: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class Hypervisor(Section):
    domain_type: Literal["qemu", "kvm"] = "qemu"  # "kvm" where hardware virtualisation works
    machine: Name = "pc"
    shutdown_timeout_s: Number = 30  # ACPI shutdown grace before a stop powers the VM off
    detach_timeout_s: Number = 20  # how long a hot-unplug waits for the guest to release the disk
    cpu_allocation_ratio: PositiveNumber = 1.0
    memory_allocation_ratio: PositiveNumber = 1.0
    disk_gb: PositiveCount = 500  # schedulable local disk per host when libvirt cannot tell


class Scheduler(Section):
    worker_policy: Literal["pack", "stripe"] = "pack"
    service_policy: Literal["pack", "stripe"] = "stripe"


class Lvm(Section):
    volume_group: Name = "ivfarm"
    devices: list[PathStr] = []


class WorkerStorage(Section):
    # qcow2: overlays on the host's cached image (the repository's when the host has no ssh_target);
    # lvm: logical volumes of a volume group, the image copied from the host's cache.
    backend: Literal["qcow2", "lvm"] = "qcow2"
    lvm: Lvm = Field(default_factory=Lvm)


class Gluster(Section):
    volume: Name = "ivfarm"
    hosts: list[Name] = []
    mount: PathStr = "/var/lib/ivfarm/gluster"


class SharedDir(Section):
    dir: PathStr = "/var/lib/ivfarm/shared"  # mounted at this path on every service host (NFS...)


class ServiceStorage(Section):
    # qcow2: local overlays (single host); gluster: overlays on a GlusterFS volume every service
    # host mounts (netfs pool, fuse), base images copied onto it once: live migration, failover;
    # shared: overlays in a directory every service host already mounts at shared.dir (an NFS
    # export, a cluster file system), on the hosts' images: live migration (the site vouches for
    # the sharing: libvirt's own shared-storage check is skipped), failover.
    backend: Literal["qcow2", "gluster", "shared"] = "qcow2"
    gluster: Gluster = Field(default_factory=Gluster)
    shared: SharedDir = Field(default_factory=SharedDir)


class Storage(Section):
    worker: WorkerStorage = Field(default_factory=WorkerStorage)
    service: ServiceStorage = Field(default_factory=ServiceStorage)


class ImageCache(Section):
    """Per-host image cache for workers, filled in waves over SSH (rsync) by ``ivfarm image sync``."""

    dir: PathStr = "/var/lib/ivfarm/cache"  # default for hosts registered without --cache-dir
    fanout: PositiveCount = 1  # transfers each host with a copy serves per round
    attempts: PositiveCount = 3  # sources tried per host before it is reported failed
    ssh_key: PathStr | None = None  # private key, at the same path on the controller and on the hosts
    ssh_options: list[str] = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                              "-o", "ConnectTimeout=10"]
    bwlimit_kbps: Count = 0  # rsync --bwlimit per transfer; 0: unlimited


class Hosts(Section):
    failure_grace_s: Number = 120  # how long a host may stay unreachable before its VMs are recovered
    fence_command: Name | None = None  # command (no shell) with {name} and {uri}; exit 0 = powered off. None: never fence
    fence_timeout_s: PositiveNumber = 120
    worker_failure_policy: Literal["recreate", "leave"] = "leave"  # what happens to a failed host's worker VMs
    # what a graceful drain does to worker VMs once their grace ends (service VMs are migrated)
    drain_worker_policy: Literal["terminate", "stop"] = "terminate"


class Journal(Section):
    """Work in flight is renewed by its process every heartbeat_s; reconcile treats it as stuck once
    the heartbeat is older than heartbeat_lapse_s (and at once when its process, on this node, is gone)."""

    heartbeat_s: PositiveNumber = 5
    heartbeat_lapse_s: PositiveNumber = 60


class Provisioner(Section):
    """Jobs that run at once: per host and per farm (fair order between farms); idle workers poll every poll_s."""

    per_host: PositiveCount = 4
    per_farm: PositiveCount = 8
    poll_s: PositiveNumber = 1.0


class Public(Section):
    cidr: Ipv4Network = "198.51.100.0/24"
    gateway: Ipv4Address = "198.51.100.1"
    range: Annotated[list[Ipv4Address], Field(min_length=2, max_length=2)] = ["198.51.100.10", "198.51.100.250"]
    bridge: Annotated[str, Field(min_length=1, max_length=15)] = "ivpub0"
    netns: Name | None = "ivfarm-public"  # None: the bridge is a host bridge of the site
    dhcp_server: Ipv4Address | None = None  # leases public NICs their address; None: the gateway

    @model_validator(mode="after")
    def _inside_cidr(self) -> Public:
        network = ipaddress.IPv4Network(self.cidr)
        for key, address in (("gateway", self.gateway), ("range[0]", self.range[0]), ("range[1]", self.range[1])):
            if ipaddress.IPv4Address(address) not in network:
                raise PydanticCustomError("check_public", "{key} {address} is outside cidr {cidr}",
                                          {"key": key, "address": address, "cidr": self.cidr})
        if ipaddress.IPv4Address(self.range[0]) > ipaddress.IPv4Address(self.range[1]):
            raise PydanticCustomError("check_public", "range must be [first, last] with first <= last")
        return self


class Vxlan(Section):
    """VXLAN farm segments: VNI = vni_base + the farm's VLAN id, UDP port ``port`` between hosts'
    underlay addresses (``host add --underlay-address``)."""

    vni_base: Annotated[int, Field(ge=0, le=2**24 - 4096)] = 100000
    port: Annotated[int, Field(ge=1, le=65535)] = 4789


class Network(Section):
    farm_pool: Ipv4Network = "10.64.0.0/12"
    farm_prefix: Annotated[int, Field(ge=8, le=29)] = 24
    vlan_range: Annotated[list[VlanId], Field(min_length=2, max_length=2)] = [100, 4000]
    # bridge: a libvirt bridge per farm and host, spanning hosts as 802.1Q on trunk_interface when set;
    # vxlan: a bridge per farm and host joined by one VNI with a static FDB (network.vxlan)
    segments: Literal["bridge", "vxlan"] = "bridge"
    trunk_interface: Name | None = None
    vxlan: Vxlan = Field(default_factory=Vxlan)
    public: Public = Field(default_factory=Public)
    dns_forwarders: list[IpAddress] = ["198.51.100.1"]
    egress_deny: list[Ipv4Network] = []  # site networks (management, storage) farm traffic never reaches

    @model_validator(mode="after")
    def _ranges(self) -> Network:
        if self.vlan_range[0] > self.vlan_range[1]:
            raise PydanticCustomError("check_network", "vlan_range must be [low, high] with low <= high")
        pool = ipaddress.IPv4Network(self.farm_pool)
        if self.farm_prefix < pool.prefixlen:
            raise PydanticCustomError("check_network", "farm_prefix /{prefix} is larger than farm_pool {pool}",
                                      {"prefix": self.farm_prefix, "pool": self.farm_pool})
        return self


class OpenWrt(Section):
    """The OpenWrt router VM: an admin-registered image that brings its WAN up on the router's public
    address (the site's DHCP reserves it for the WAN MAC 02:01:+address) with SSH for ssh_user."""

    image: Name | None = None
    vcpus: PositiveCount = 1
    memory_mb: Annotated[int, Field(ge=64)] = 150
    ssh_user: Name = "root"
    ssh_key: PathStr | None = None
    known_hosts: PathStr | None = None
    ssh_allow_from: Networks | None = None  # None: the controller's own address toward each router


class Vrouter(Section):
    backend: Literal["netns", "openwrt", "none"] = "netns"
    host_uri: Name = "qemu:///system"  # the hypervisor that carries the routers' side of farm segments
    openwrt: OpenWrt = Field(default_factory=OpenWrt)


class QuotaDefaults(Section):
    instances: Count = 4
    vcpus: Count = 8
    memory_mb: Count = 16384
    disk_gb: Count = 200
    addresses: Count = 1
    volumes: Count = 20
    volume_gb: Count = 500


class Zones(Section):
    worker: Name | None = None  # None: <region>-worker
    service: Name | None = None


class Limits(Section):
    """Per farm: requests in flight at once, a token bucket of requests (rate per second, burst), how many
    signatures of mutating requests are remembered against replay (15 minutes each), and how long after its
    first sighting a signature may come again (the client's own repeat within the same second)."""

    concurrent: PositiveCount = 64
    rate_per_s: PositiveNumber = 200
    burst: PositiveCount = 400
    replay_entries: PositiveCount = 50000
    replay_grace_s: Number = 2.0
    # where signatures are remembered: this process (memory), the shared store, or auto (the store
    # when the server has several workers or the store is PostgreSQL, so several controllers may serve)
    replay_guard: Literal["auto", "memory", "store"] = "auto"


class SecurityGroupLimits(Section):
    """Per farm: security groups, rules per group and direction, groups per instance."""

    per_farm: PositiveCount = 2500
    rules_per_group: PositiveCount = 60
    per_instance: PositiveCount = 5


class MetadataOptions(Section):
    """What an instance's metadata service enforces unless RunInstances asks otherwise (EC2's MetadataOptions)."""

    imdsv2: Literal["optional", "required"] = "optional"  # EC2's HttpTokens
    http_put_response_hop_limit: Annotated[int, Field(ge=1, le=64)] = 1
    http_endpoint: Literal["enabled", "disabled"] = "enabled"


class Mjf(Section):
    """WLCG Machine/Job Features the farm routers publish to each VM (HSF-TN-2016-02)."""

    wall_limit_s: PositiveCount | None = None  # a VM's wall-clock limit (jobfeatures wall_limit_secs); None: none
    grace_s: Count | None = None  # notice a drain gives at least (machinefeatures grace_secs); None: unannounced


class Ec2(Section):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8773"
    region: Name = "ivfarm-1"
    zones: Zones = Field(default_factory=Zones)
    provision_workers: PositiveCount = 4
    terminated_visible_s: Number = 3600
    limits: Limits = Field(default_factory=Limits)
    security_groups: SecurityGroupLimits = Field(default_factory=SecurityGroupLimits)
    metadata_options: MetadataOptions = Field(default_factory=MetadataOptions)


class Apel(Section):
    """APEL cloud accounting: the site as GOCDB names it and the queue APEL's ssmsend ships from."""

    site_name: Name | None = None  # GOCDB site name; ``accounting export --format apel`` needs it
    cloud_compute_service: Name | None = None  # the service within the site; None: the site name (as cASO)
    cloud_type: Name = "ivfarm"
    outgoing_dir: PathStr = "/var/spool/apel/outgoing/ivfarm"  # a dirq QueueSimple directory
    records_per_message: PositiveCount = 100  # records per queued message (cASO's ssm max_size)


class Accounting(Section):
    apel: Apel = Field(default_factory=Apel)


class Settings(Section):
    """The whole configuration file."""

    state_dir: PathStr = "/var/lib/ivfarm"
    # Names this cloud on shared hypervisors: its storage pools are <cloud_id>-disks, -seeds, -console
    # and its domains carry it in their metadata, so reconcile never touches another cloud's resources.
    cloud_id: Annotated[str, AfterValidator(_cloud_id)] = "ivfarm"
    database: Annotated[str, AfterValidator(_database_url)] | None = None  # None -> sqlite:///<state_dir>/ivfarm.db
    # the Fernet key farm secret keys are sealed with in the database (0600; keep it out of database backups,
    # and the same file on every controller); None -> <state_dir>/secret.key
    secret_key_file: PathStr | None = None
    hypervisor: Hypervisor = Field(default_factory=Hypervisor)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    storage: Storage = Field(default_factory=Storage)
    image_cache: ImageCache = Field(default_factory=ImageCache)
    hosts: Hosts = Field(default_factory=Hosts)
    journal: Journal = Field(default_factory=Journal)
    provisioner: Provisioner = Field(default_factory=Provisioner)
    network: Network = Field(default_factory=Network)
    vrouter: Vrouter = Field(default_factory=Vrouter)
    quota_defaults: QuotaDefaults = Field(default_factory=QuotaDefaults)
    mjf: Mjf = Field(default_factory=Mjf)
    ec2: Ec2 = Field(default_factory=Ec2)
    accounting: Accounting = Field(default_factory=Accounting)


def section_keys(loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys the section at ``loc`` (a path of keys) allows; None if ``loc`` is no section."""
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return list(model.model_fields)
