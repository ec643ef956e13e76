"""Record events inside the caller's transaction (never committed here)."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.events.models import OutboxEvent
from hangar.core.ids import new_id


def record(
    session: AsyncSession, type_: str, *, team_id: str | None, payload: dict[str, Any]
) -> OutboxEvent:
    """Add an event to the session: it exists exactly when the change it describes commits."""
    correlation_id = structlog.contextvars.get_contextvars().get("correlation_id")
    event = OutboxEvent(
        id=new_id(),
        type=type_,
        version=1,
        team_id=team_id,
        payload=payload,
        correlation_id=str(correlation_id) if correlation_id else None,
    )
    session.add(event)
    return event
