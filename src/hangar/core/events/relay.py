"""The relay: moves committed outbox events to the sinks, at least once, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.events.envelope import Event
from hangar.core.events.models import OutboxEvent

log = structlog.get_logger("hangar.events.relay")
Sink = Callable[[list[Event]], Awaitable[None]]
# Runs inside the relay's transaction: what it writes commits exactly with the progress mark.
TransactionalSink = Callable[[AsyncSession, list[Event]], Awaitable[None]]


class Relay:
    """Claims pending events (SKIP LOCKED on PostgreSQL, so relays can run side by side)."""

    def __init__(
        self,
        db: Database,
        sinks: list[Sink],
        *,
        transactional: list[TransactionalSink] | None = None,
        batch: int = 100,
        interval: float = 0.2,
    ) -> None:
        self.db = db
        self.sinks = sinks
        self.transactional = transactional or []
        self.batch = batch
        self.interval = interval
        self.wake = asyncio.Event()

    async def relay_once(self) -> int:
        """Relay one batch; returns how many events went out. Sinks failing: nothing marked."""
        async with self.db.session() as session:
            rows = (
                (
                    await session.execute(
                        select(OutboxEvent)
                        .where(OutboxEvent.relayed_at.is_(None))
                        .order_by(OutboxEvent.seq)
                        .limit(self.batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                return 0
            events = [Event.from_row(r) for r in rows]
            for in_tx in self.transactional:
                await in_tx(session, events)
            for sink in self.sinks:
                await sink(events)
            now = utcnow()
            for row in rows:
                row.relayed_at = now
            await checkpoint(session)
            return len(rows)

    async def run_forever(self) -> None:
        """Relay until cancelled; failures are logged and retried with the same events."""
        failures = 0
        while True:
            try:
                sent = await self.relay_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("relay.failed", attempt=failures)
                await asyncio.sleep(min(0.5 * 2**failures, 30.0))
                continue
            if sent:
                continue  # more may be waiting
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval)
