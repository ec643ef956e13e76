"""Tables of the hosts feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base, TimestampedModel
from hangar.core.db.base import StatusText


class HostType(enum.StrEnum):
    """Regular hosts are shared by every team; BYOC hosts belong to one team."""

    REGULAR = "regular"
    BYOC = "byoc"


class HostStatus(enum.StrEnum):
    """Lifecycle of a host as the control plane sees it."""

    PENDING = "pending"  # created, its agent has not registered yet
    ONLINE = "online"
    OFFLINE = "offline"
    DRAINING = "draining"
    UNREACHABLE = "unreachable"  # heartbeats stopped arriving


class HostTokenKind(enum.StrEnum):
    """What a stored host secret is for."""

    REGISTRATION = "registration"
    REFRESH = "refresh"


class Host(TimestampedModel):
    """A machine whose agent runs capsules. Deleted for good (capsules keep its id as text)."""

    __tablename__ = "hosts"

    type: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[str | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True, default=None
    )
    provider: Mapped[str | None] = mapped_column(String(64), default=None)
    availability_zone: Mapped[str | None] = mapped_column(String(64), default=None)
    arch: Mapped[str | None] = mapped_column(String(32), default=None)
    cpu_cores: Mapped[int | None] = mapped_column(Integer, default=None)
    memory_mb: Mapped[int | None] = mapped_column(Integer, default=None)
    disk_gb: Mapped[int | None] = mapped_column(Integer, default=None)
    address: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[HostStatus] = mapped_column(
        StatusText(HostStatus), default=HostStatus.PENDING, index=True
    )
    # An admin's wish, kept apart from `status` so a draining host that drops out and comes
    # back is draining again, not online (status is `draining` whenever it is reachable).
    draining: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # The internal URL of the control-plane replica holding this host's uplink, while it is
    # up: the other replicas relay their agent calls through it (see fleet/relay.py).
    uplink_replica: Mapped[str | None] = mapped_column(String(255), default=None)
    uplink_since: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Placement's region label (Warpdrive and GPUaaS regions); configured agents get
    # HANGAR_HOSTS__REGION, `local` unless set.
    region: Mapped[str] = mapped_column(String(64), default="local", server_default="local")


class HostGpu(Base):
    """One GPU of a host, as its agent reported it, and what holds it now."""

    __tablename__ = "host_gpus"
    __table_args__ = (Index("ix_host_gpus_host_model", "host_id", "model"),)

    host_id: Mapped[str] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    # NVML's stable device UUID ("GPU-8f3c..."): indexes change across reboots, UUIDs do not.
    uuid: Mapped[str] = mapped_column(String(96), primary_key=True)
    index: Mapped[int] = mapped_column(Integer)  # NVML's index: the device node /dev/nvidiaN
    vendor: Mapped[str] = mapped_column(String(16), default="nvidia")
    model: Mapped[str] = mapped_column(String(64))
    memory_mib: Mapped[int] = mapped_column(Integer)
    # The capsule or allocation using it; set and cleared by conditional UPDATEs only.
    holder_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HostToken(TimestampedModel):
    """A one-time registration token or a refresh token, kept only as a SHA-256 hash."""

    __tablename__ = "host_tokens"
    __table_args__ = (Index("ix_host_tokens_host_kind", "host_id", "kind"),)

    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    # Set once, atomically, when the token is consumed (registration) or rotated (refresh).
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class HostTag(Base):
    """A free-form label on a host."""

    __tablename__ = "host_tags"

    host_id: Mapped[str] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamPlacement(Base):
    """How a team's capsules are placed; a team without a row uses the defaults."""

    __tablename__ = "team_placement"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    # Only the team's own BYOC hosts, never the shared regular ones.
    byoc_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
