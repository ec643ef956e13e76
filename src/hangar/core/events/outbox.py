"""Record events inside the caller's transaction (never committed here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core import correlation
from hangar.core.events.models import OutboxEvent
from hangar.core.ids import new_id


def record(
    session: AsyncSession, type_: str, *, team_id: str | None, payload: dict[str, Any]
) -> OutboxEvent:
    """Add an event to the session: it exists exactly when the change it describes commits."""
    # The request's id, or the background job tick's (core/correlation.py).
    correlation_id = correlation.current()
    event = OutboxEvent(
        id=new_id(),
        type=type_,
        version=1,
        team_id=team_id,
        payload=payload,
        correlation_id=correlation_id,
    )
    session.add(event)
    return event


async def oldest_pending(session: AsyncSession) -> datetime | None:
    """When the oldest event not yet relayed occurred (None when the relay is caught up)."""
    # The relay's own index (relayed_at, seq) answers this: the first pending row by seq.
    stmt = (
        select(OutboxEvent.occurred_at)
        .where(OutboxEvent.relayed_at.is_(None))
        .order_by(OutboxEvent.seq)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
