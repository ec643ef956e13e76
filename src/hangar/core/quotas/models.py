"""Tables of the quotas feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base


class TeamQuota(Base):
    """A team's own limits; a null column falls back to the configured default."""

    __tablename__ = "team_quotas"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    vcpu: Mapped[int | None] = mapped_column(Integer, default=None)
    memory_mib: Mapped[int | None] = mapped_column(Integer, default=None)
    disk_gib: Mapped[int | None] = mapped_column(Integer, default=None)
    snapshot_count: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
