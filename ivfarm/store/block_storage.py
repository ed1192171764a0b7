"""Models of farms' block storage: volumes and their snapshots (re-exported by ``ivfarm.store.models``)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ivfarm.store.base import Base, utcnow
from ivfarm.store.types import UTCDateTime


class Volume(Base):
    """A farm's block volume (EBS-like): a disk in the storage of its class, attached to at most one
    instance. ``host_id`` is the host whose pool holds it (None: not made yet, or shared storage
    reached from any host of the class); ``state`` and ``attach_state`` follow EC2. A state in flight
    (creating, deleting, attaching, detaching) always has its job (``store.jobs``), written with it."""

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("instance_id", "device"), Index("ix_volumes_farm_state", "farm_id", "state"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # vol-
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    host_class: Mapped[str] = mapped_column(String(16))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), nullable=True)
    size_gb: Mapped[int] = mapped_column(Integer)
    volume_type: Mapped[str] = mapped_column(String(16), default="gp2")  # standard | gp2 | gp3 (shown only)
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # creating | available | in-use | deleting | deleted | error
    made: Mapped[bool] = mapped_column(Boolean, default=False)  # the disk exists in its pool
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("instances.id"), nullable=True, index=True)
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)  # /dev/sdf as the tenant named it
    attach_state: Mapped[str | None] = mapped_column(String(16), nullable=True)  # attaching | attached | detaching
    attach_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Snapshot(Base):
    """A point-in-time copy of a volume, kept beside it in the same pool (``host_id``)."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_farm_state", "farm_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # snap-
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    volume_id: Mapped[str] = mapped_column(String(32))
    host_class: Mapped[str] = mapped_column(String(16))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), nullable=True)
    size_gb: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | completed | deleting | deleted | error
    made: Mapped[bool] = mapped_column(Boolean, default=False)  # False: the volume had no disk yet (empty)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
