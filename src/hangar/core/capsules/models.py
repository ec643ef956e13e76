"""Tables of the capsules feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base, TimestampedModel
from hangar.core.db.base import StatusText


class CapsuleStatus(enum.StrEnum):
    """Lifecycle of a capsule as the control plane records it."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"  # destroyed; kept for history and usage
    MISSING = "missing"  # its host no longer reports it
    ERROR = "error"


LIVE_STATUSES = (
    CapsuleStatus.PENDING,
    CapsuleStatus.STARTING,
    CapsuleStatus.RUNNING,
    CapsuleStatus.PAUSED,
    CapsuleStatus.MISSING,
    CapsuleStatus.ERROR,
)


class Capsule(TimestampedModel):
    """One sandbox owned by a team."""

    __tablename__ = "capsules"
    __table_args__ = (Index("ix_capsules_team_status", "team_id", "status"),)

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    host_id: Mapped[str] = mapped_column(String(64), index=True)
    template: Mapped[str] = mapped_column(String(64))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    timeout_sec: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[CapsuleStatus] = mapped_column(
        StatusText(CapsuleStatus), default=CapsuleStatus.PENDING
    )
    status_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    guest_ip: Mapped[str] = mapped_column(String(64), default="")
    host_ip: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    last_active_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(default=None)
    name: Mapped[str | None] = mapped_column(String(64), default=None)
    machine_type: Mapped[str | None] = mapped_column(String(16), default=None)
    # Writable disk in GiB, enforced by the runtime (the configured default when not asked
    # for); None only on capsules made before every capsule had one: no limit.
    disk_gb: Mapped[int | None] = mapped_column(Integer, default=None)
    # JSON firewall policy (capsules.firewall); None: loopback-only networking, no IPv6.
    firewall: Mapped[str | None] = mapped_column(Text, default=None)
    ipv6: Mapped[str] = mapped_column(String(64), default="")
    # The machine type or snapshot name it was made from, as it was called then.
    source_name: Mapped[str | None] = mapped_column(String(64), default=None)
    source_snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    # Provisioner claims (pending -> starting): failed starts so far, kept in the row so the
    # limit holds across replicas and restarts, and when the current claim was taken.
    start_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    # When a destroy asked its host, committed before asking: a crash between the host's
    # destroy and the row's leaves this set, and the reconciler finishes the destroy instead
    # of taking the vanished sandbox for a lost one (`missing`, still held against the quota).
    destroying_since: Mapped[datetime | None] = mapped_column(default=None)


class TemplateKind(enum.StrEnum):
    """Base templates are built or imported root filesystems; snapshots come from capsules."""

    BASE = "base"
    SNAPSHOT = "snapshot"


class SnapshotStatus(enum.StrEnum):
    """A snapshot is usable once `ready`."""

    CREATING = "creating"
    READY = "ready"
    ERROR = "error"


class Template(TimestampedModel):
    """A snapshot template a team made (base templates live on the hosts)."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # Name of the template's files on its host; unique per host, unlike `name`.
    host_template: Mapped[str] = mapped_column(String(64), unique=True)
    host_id: Mapped[str] = mapped_column(String(64))
    vcpus: Mapped[int | None] = mapped_column(Integer)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[SnapshotStatus] = mapped_column(
        StatusText(SnapshotStatus), default=SnapshotStatus.READY
    )
    status_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    source_capsule_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # The source capsule's firewall policy (JSON) and disk size, given to capsules made from it.
    firewall: Mapped[str | None] = mapped_column(Text, default=None)
    disk_gb: Mapped[int | None] = mapped_column(Integer, default=None)


class MetricSample(Base):
    """A capsule's metrics persisted when it pauses (the agent's rings are memory only)."""

    __tablename__ = "capsule_metric_samples"

    capsule_id: Mapped[str] = mapped_column(
        ForeignKey("capsules.id", ondelete="CASCADE"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(8), primary_key=True)
    timestamp_unix: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    cpu_pct: Mapped[float] = mapped_column(Float)
    mem_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_bytes: Mapped[int] = mapped_column(BigInteger)


class UsageSample(Base):
    """A team's running capsules and reserved resources at one moment."""

    __tablename__ = "capsule_usage_samples"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    sampled_at: Mapped[datetime] = mapped_column(primary_key=True)
    running: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
