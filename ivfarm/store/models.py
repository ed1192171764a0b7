"""SQLAlchemy ORM models: the desired state of the cloud."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivfarm.store.base import Base as Base
from ivfarm.store.base import utcnow as utcnow
from ivfarm.store.block_storage import Snapshot as Snapshot
from ivfarm.store.block_storage import Volume as Volume

# the instance states, re-exported for the many readers that only need these groups
from ivfarm.store.states import ACTIVE_STATES as ACTIVE_STATES
from ivfarm.store.states import IN_FLIGHT as IN_FLIGHT
from ivfarm.store.states import LIVE_STATES as LIVE_STATES
from ivfarm.store.types import Sealed, UTCDateTime

HOST_CLASSES = ("service", "worker")


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    uri: Mapped[str] = mapped_column(String(512))
    host_class: Mapped[str] = mapped_column(String(16), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    cpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    cpu_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    memory_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="up")  # up | unreachable | fenced
    unreachable_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # SSH endpoint (user@host:port) for the image cache; None: the host reads the repository's files
    ssh_target: Mapped[str | None] = mapped_column(String(256), nullable=True)
    cache_dir: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # None: image_cache.dir
    migration_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)  # as peers reach it; None: uri
    hs06_per_core: Mapped[float | None] = mapped_column(Float, nullable=True)  # HEP-SPEC06 per core; None: unrated
    # VTEP address of VXLAN farm segments on this host; None: the host carries no VXLAN segment
    underlay_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # network namespace of this machine where the host's links live (multi-host test site); None: its own
    netns: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    instances: Mapped[list[Instance]] = relationship(back_populates="host")


class Flavor(Base):
    __tablename__ = "flavors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(256), default="")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # ami-/aki-/ari-
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # machine | kernel | ramdisk
    path: Mapped[str] = mapped_column(String(1024))
    disk_format: Mapped[str] = mapped_column(String(16))  # raw | qcow2 (machine images)
    size_bytes: Mapped[int] = mapped_column(Integer)
    virtual_size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_farm_id: Mapped[int | None] = mapped_column(ForeignKey("farms.id"), nullable=True)
    kernel_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ramdisk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cmdline: Mapped[str] = mapped_column(String(512), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    # pending (CreateImage's job flattens the disk) | available | failed | deregistered (file kept while used)
    state: Mapped[str] = mapped_column(String(16), default="available", server_default="available")
    state_reason: Mapped[str] = mapped_column(String(256), default="", server_default="")
    source_instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # CreateImage's instance
    # EC2 BlockDeviceMapping of the image: [{"device": "/dev/vda", "size_gb": 1}]
    block_devices: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LaunchPermission(Base):
    """A farm another farm's image is shared with (ModifyImageAttribute launchPermission)."""

    __tablename__ = "image_launch_permissions"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), primary_key=True, index=True)


class Farm(Base):
    __tablename__ = "farms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(256), default="")
    access_key: Mapped[str] = mapped_column(String(128), unique=True)
    secret_key: Mapped[str] = mapped_column(Sealed())  # sealed at rest, in clear here
    cidr: Mapped[str] = mapped_column(String(32), unique=True)
    vlan: Mapped[int] = mapped_column(Integer, unique=True)
    router_backend: Mapped[str] = mapped_column(String(16))
    router_ip: Mapped[str] = mapped_column(String(64))  # public IP of the router
    status: Mapped[str] = mapped_column(String(16), default="creating")  # creating | active | deleting
    quota_instances: Mapped[int] = mapped_column(Integer)
    quota_vcpus: Mapped[int] = mapped_column(Integer)
    quota_memory_mb: Mapped[int] = mapped_column(Integer)
    quota_disk_gb: Mapped[int] = mapped_column(Integer)
    quota_addresses: Mapped[int] = mapped_column(Integer)
    # whom grid accounting (APEL) charges the farm's VMs to; "" = not mapped
    vo: Mapped[str] = mapped_column(String(64), default="", server_default="")
    fqan: Mapped[str] = mapped_column(String(255), default="", server_default="")
    global_user_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    quota_volumes: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    quota_volume_gb: Mapped[int] = mapped_column(Integer, default=500, server_default="500")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    instances: Mapped[list[Instance]] = relationship(back_populates="farm")


class Instance(Base):
    __tablename__ = "instances"
    # one RunInstances call (its ClientToken) makes instances 0..N-1 of one reservation, once
    __table_args__ = (UniqueConstraint("farm_id", "client_token", "launch_index"),
                      Index("ix_instances_farm_state", "farm_id", "state"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    farm_id: Mapped[int | None] = mapped_column(ForeignKey("farms.id"), nullable=True, index=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"))
    flavor_name: Mapped[str] = mapped_column(String(64))
    host_class: Mapped[str] = mapped_column(String(16))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), nullable=True, index=True)
    # the farm's placement group it was launched in (spread: no two live members share a host)
    placement_group_id: Mapped[str | None] = mapped_column(ForeignKey("placement_groups.id"), nullable=True,
                                                           index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str] = mapped_column(String(256), default="")
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(32), nullable=True)
    public_nic: Mapped[bool] = mapped_column(Boolean, default=False)
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    client_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reservation_id: Mapped[str] = mapped_column(String(32), default="")
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    restart_policy: Mapped[str] = mapped_column(String(16), default="none")  # none | always
    # what a poweroff from inside the guest does: stop | terminate (InstanceInitiatedShutdownBehavior)
    shutdown_behavior: Mapped[str] = mapped_column(String(16), default="stop", server_default="stop")
    disable_api_termination: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # ModifyInstanceAttribute changed what the domain or seed is made of: re-rendered at the next start
    redefine_on_start: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # EC2 MetadataOptions, enforced by the farm router's metadata service
    metadata_http_tokens: Mapped[str] = mapped_column(String(16), default="optional")  # optional | required
    metadata_hop_limit: Mapped[int] = mapped_column(Integer, default=1)  # IP TTL of token responses
    metadata_http_endpoint: Mapped[str] = mapped_column(String(16), default="enabled")  # enabled | disabled
    # the process doing its work in flight ("node:pid"), renewing heartbeat_at while it works;
    # reconcile leaves the instance alone while that heartbeat is fresh
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    launched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    farm: Mapped[Farm | None] = relationship(back_populates="instances")
    host: Mapped[Host | None] = relationship(back_populates="instances")
    image: Mapped[Image] = relationship()


class PlacementGroup(Base):
    """An EC2 placement group of a farm; ``spread`` keeps its live instances on distinct hosts."""

    __tablename__ = "placement_groups"
    __table_args__ = (UniqueConstraint("farm_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    strategy: Mapped[str] = mapped_column(String(16))  # spread (the one strategy served; host level)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KeyPair(Base):
    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("farm_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Address(Base):
    """A public IPv4 address: a farm's router address or its elastic IP."""

    __tablename__ = "addresses"

    public_ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # router | elastic
    allocation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    allocated: Mapped[bool] = mapped_column(Boolean, default=False)  # handed to the tenant
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("instances.id"), nullable=True)
    association_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    allocated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PortForward(Base):
    __tablename__ = "port_forwards"
    __table_args__ = (UniqueConstraint("farm_id", "protocol", "public_port"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(8))
    public_port: Mapped[int] = mapped_column(Integer)
    private_ip: Mapped[str] = mapped_column(String(64))
    private_port: Mapped[int] = mapped_column(Integer)


class SecurityGroup(Base):
    """A farm's security group; ``default`` is made with the farm."""

    __tablename__ = "security_groups"
    __table_args__ = (UniqueConstraint("farm_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sg-
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SecurityGroupRule(Base):
    """One rule: traffic of ``protocol`` on ports ``from_port..to_port`` (ICMP: type, code; -1: any)
    from or to ``cidr`` or the members of ``source_group_id``."""

    __tablename__ = "security_group_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sgr-
    group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id"), index=True)
    egress: Mapped[bool] = mapped_column(Boolean)
    protocol: Mapped[str] = mapped_column(String(8))  # tcp | udp | icmp | -1
    from_port: Mapped[int] = mapped_column(Integer)
    to_port: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_group_id: Mapped[str | None] = mapped_column(ForeignKey("security_groups.id"), nullable=True,
                                                        index=True)
    description: Mapped[str] = mapped_column(String(255), default="")


class InstanceGroup(Base):
    """An instance's membership of a security group."""

    __tablename__ = "instance_security_groups"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Tag(Base):
    __tablename__ = "tags"

    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(256), default="")


class Operation(Base):
    """A multi-step operation in flight; ``reconcile`` finishes or rolls back what a crash left."""

    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class UsageRecord(Base):
    """One accounting sample: usage of one instance (or a farm's elastic IP) over an interval."""

    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    farm_name: Mapped[str] = mapped_column(String(64), index=True)
    resource_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # instance | address | volume
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    end: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)
    running: Mapped[bool] = mapped_column(Boolean, default=True)
    # what the hypervisor counted (instances): where and in which boot of the domain the interval ended,
    # the domain's counters then (None when it did not run), and the usage they add up to in the interval
    host_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    boot_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # libvirt's domain id: new at each start
    cpu_time_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rx_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tx_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    net_in_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    net_out_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    public_ips: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    machine_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    image_id: Mapped[str | None] = mapped_column(String(32), nullable=True)



class Job(Base):
    """A change to a host or router the API decided and a provisioner carries out (``ivfarm.store.jobs``)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_farm", "state", "farm_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # provision | stop | terminate | router-sync
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done | failed
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    farm_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RequestSignature(Base):
    """A mutating EC2 request's signature, remembered until it expires, so that a replay is refused
    whichever API worker or controller it reaches (``ivfarm.ec2.replay.StoreReplayGuard``)."""

    __tablename__ = "request_signatures"
    __table_args__ = (Index("ix_request_signatures_farm_expiry", "farm_id", "valid_until"),)

    farm_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signature: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())


DRAIN_STATES = ("active", "done", "cancelled")


class Drain(Base):
    """A graceful drain: a host's VMs (``host_id``) or one VM (``instance_id``) announced a
    shutdown time (``deadline``, published to them as Machine/Job Features); once it passes,
    ``ivfarm reconcile`` moves or ends them (``ivfarm.services.compute.drains``)."""

    __tablename__ = "drains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), nullable=True, index=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)  # active | done | cancelled
    grace_s: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    host_was_enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # what a cancel gives back
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # instance id -> what was done
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
