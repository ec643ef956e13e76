"""Tables of the idempotency feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.db import TimestampedModel


class KeyState(enum.StrEnum):
    """Where the first request carrying a key is."""

    IN_FLIGHT = "in_flight"  # claimed: its request is running somewhere
    DONE = "done"  # its response is stored and replayed


class IdempotencyKey(TimestampedModel):
    """One principal's `Idempotency-Key`: the request it was first used for and its answer."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # The claim is this constraint: two replicas inserting the same key, one wins.
        UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    scope: Mapped[str] = mapped_column(String(96))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path, query and body: the same key for a different request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[KeyState] = mapped_column(String(16))
    # An in-flight claim older than this was left by a crashed replica and may be taken over.
    locked_until: Mapped[datetime]
    expires_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    # The stored response's content type and body, replayed byte for byte.
    content_type: Mapped[str | None] = mapped_column(Text, default=None)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
