"""Tables of the terminals feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import TimestampedModel
from hangar.core.db.base import StatusText


class SessionStatus(enum.StrEnum):
    """Lifecycle of a terminal session (lifecycle.py has its transitions)."""

    STARTING = "starting"  # its machine is being placed and started
    RUNNING = "running"
    ENDED = "ended"  # ended by its owner; kept for history
    FAILED = "failed"  # its machine could not be started


class GuestState(enum.StrEnum):
    """Where a guest's request to join stands (lifecycle.py has its transitions)."""

    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    REMOVED = "removed"  # approved once, removed by the owner (or left before a decision)


class TerminalSession(TimestampedModel):
    """A terminal on one machine that its owner shares with approved guests."""

    __tablename__ = "terminal_sessions"
    __table_args__ = (Index("ix_terminal_sessions_owner_status", "owner_id", "status"),)

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # What people type: `ssh <alias>@host`. Unique, human-friendly, never reused.
    alias: Mapped[str] = mapped_column(String(64), unique=True)
    machine_id: Mapped[str] = mapped_column(String(64))
    image_id: Mapped[str | None] = mapped_column(String(64), default=None)
    region: Mapped[str] = mapped_column(String(64))
    no_join: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[SessionStatus] = mapped_column(
        StatusText(SessionStatus), default=SessionStatus.STARTING
    )
    status_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    capsule_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    owner_pub_key: Mapped[str] = mapped_column(Text)
    owner_key_fingerprint: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TerminalGuest(TimestampedModel):
    """One request to join a session, and what became of it."""

    __tablename__ = "terminal_guests"
    __table_args__ = (Index("ix_terminal_guests_session_state", "session_id", "state"),)

    session_id: Mapped[str] = mapped_column(ForeignKey("terminal_sessions.id", ondelete="CASCADE"))
    # The joiner's SSE subject: the owner approves or rejects by it.
    joiner_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    vm_user: Mapped[str] = mapped_column(String(32))
    pub_key: Mapped[str] = mapped_column(Text)
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    region: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[GuestState] = mapped_column(StatusText(GuestState), default=GuestState.REQUESTED)
    # Sees the terminal; its keystrokes are dropped.
    read_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    joined_at: Mapped[datetime | None] = mapped_column(default=None)
