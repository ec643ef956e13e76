"""Tables of the grants feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.db import TimestampedModel


class GrantPurpose(enum.StrEnum):
    """What a grant opens; a grant is only ever redeemed for its own purpose."""

    CONSOLE = "console"  # FastVM's console WebSocket of one capsule
    TERMINAL = "terminal"  # GPUaaS's terminal WebSocket of one allocation
    INSTALL = "install"  # GPU Go's agent install token


class Grant(TimestampedModel):
    """A single-use token for one purpose on one subject; only its SHA-256 hash is kept."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_purpose_subject", "purpose", "subject_id"),)

    purpose: Mapped[str] = mapped_column(String(16))
    # The thing it opens (a capsule, an allocation, a team); no foreign key, since subjects
    # live in different tables: a redeem re-reads its subject and refuses a vanished one.
    subject_id: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(36), default=None)
    principal_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # Space-separated scopes narrowing what it allows (`read-only`); None: all its purpose does.
    scope: Mapped[str | None] = mapped_column(Text, default=None)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    # Set once, by the one conditional UPDATE that redeems it.
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    # What the redemption produced (GPU Go: the agent an install token made), if anything.
    outcome_id: Mapped[str | None] = mapped_column(String(64), default=None)
