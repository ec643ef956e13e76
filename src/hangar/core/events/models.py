"""The outbox table: events written in the same transaction as the change they describe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
SEQ = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEvent(Base):
    """One event, relayed at least once to every sink."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_pending", "relayed_at", "seq"),)

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    team_id: Mapped[str | None] = mapped_column(String(36), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    relayed_at: Mapped[datetime | None] = mapped_column(default=None)
