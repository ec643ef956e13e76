"""Tables of the allocations feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import TimestampedModel
from hangar.core.db.base import StatusText


class AllocationStatus(enum.StrEnum):
    """Lifecycle of an allocation (gpuaas-notes.md; lifecycle.py has its transitions)."""

    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"  # provisioning failed
    RELEASE_FAILED = "release_failed"  # releasing failed after its retries; billing stops


class Allocation(TimestampedModel):
    """A SKU's capacity held for a team, on a machine placed on a host with the GPUs."""

    __tablename__ = "allocations"
    __table_args__ = (
        Index("ix_allocations_team_status", "team_id", "status"),
        Index("ix_allocations_status", "status"),
    )

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    sku: Mapped[str] = mapped_column(String(64))
    gpu_model: Mapped[str | None] = mapped_column(String(64), default=None)  # None: CPU only
    gpus_total: Mapped[int] = mapped_column(Integer, default=0)
    region: Mapped[str] = mapped_column(String(64))
    # The SKU's price when it was asked for, so a later price change bills nobody retroactively.
    price_per_hour_minor: Mapped[int] = mapped_column(BigInteger)
    ssh_key_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[AllocationStatus] = mapped_column(
        StatusText(AllocationStatus), default=AllocationStatus.REQUESTED
    )
    status_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    host_id: Mapped[str | None] = mapped_column(String(36), default=None)
    capsule_id: Mapped[str | None] = mapped_column(String(36), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    active_at: Mapped[datetime | None] = mapped_column(default=None)
    release_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    # Accrual: what has been debited so far, and when billing stopped (released, or gave up).
    billed_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    billing_stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
