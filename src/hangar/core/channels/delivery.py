"""The delivery worker: sends pending deliveries, retrying with capped exponential backoff.

Deliveries are leased (their next attempt pushed past the send timeout) in a short
transaction, sent with no transaction open, and settled in another; a worker that dies
mid-send leaves a lease that simply expires. Sends run concurrently with a timeout each, so
a channel that is down costs the others nothing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import structlog
from sqlalchemy import select

from hangar.core import correlation
from hangar.core.channels.models import Channel, Delivery, DeliveryStatus
from hangar.core.channels.providers.base import Provider
from hangar.core.channels.registry import notification
from hangar.core.channels.service import ChannelService
from hangar.core.clock import utcnow
from hangar.core.config import ChannelSettings
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.events.envelope import Event
from hangar.core.security.sealing import Sealer

log = structlog.get_logger("hangar.channels.delivery")


class DeliveryWorker:
    """Sends what the relay enqueued."""

    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        providers: dict[str, Provider],
        http: httpx.AsyncClient,
        settings: ChannelSettings,
        *,
        batch: int = 50,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.providers = providers
        self.http = http
        self.settings = settings
        self.batch = batch

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next try after `attempts` failures."""
        seconds = self.settings.backoff_base_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.settings.backoff_cap_seconds))

    async def _lease(self) -> list[tuple[str, Event, str, dict[str, str]]]:
        now = utcnow()
        lease = timedelta(seconds=self.settings.send_timeout_seconds * 3)
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Delivery, Channel)
                    .join(Channel, Channel.id == Delivery.channel_id)
                    .where(
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= now,
                    )
                    .order_by(Delivery.next_attempt_at)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True, of=Delivery)
                )
            ).all()
            service = ChannelService(session, self.sealer, self.providers, self.http)
            work = []
            for delivery, channel in rows:
                delivery.next_attempt_at = now + lease
                event = Event.from_dict(dict(delivery.event))
                work.append((delivery.id, event, channel.provider, service.config_of(channel)))
            await checkpoint(session)
        return work

    async def _send(self, provider: str, config: dict[str, str], event: Event) -> str | None:
        try:
            await asyncio.wait_for(
                self.providers[provider].send(self.http, config, notification(event)),
                self.settings.send_timeout_seconds,
            )
        except TimeoutError:
            return f"timed out after {self.settings.send_timeout_seconds:g} s"
        except Exception as exc:
            return str(exc)[:1000] or type(exc).__name__
        return None

    async def deliver_once(self) -> int:
        """Send one batch of due deliveries; returns how many were attempted."""
        work = await self._lease()
        if not work:
            return 0
        errors = await asyncio.gather(*(self._send(p, c, e) for _, e, p, c in work))
        now = utcnow()
        async with self.db.session() as session:
            for (delivery_id, event, provider, _), error in zip(work, errors, strict=True):
                delivery = await session.get(Delivery, delivery_id)
                if delivery is None:  # its channel was deleted meanwhile
                    continue
                delivery.attempts += 1
                if error is None:
                    delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, now
                    delivery.last_error = None
                    continue
                delivery.last_error = error
                log.warning(
                    "channel.delivery_failed",
                    provider=provider,
                    event_type=event.type,
                    attempts=delivery.attempts,
                    error=error,
                )
                if delivery.attempts >= self.settings.max_attempts:
                    delivery.status = DeliveryStatus.FAILED
                else:
                    delivery.next_attempt_at = now + self.backoff(delivery.attempts)
            await checkpoint(session)
        return len(work)

    async def run_forever(self) -> None:
        """Deliver until cancelled."""
        while True:
            with correlation.bound():  # one id per pass, on its logs
                try:
                    if await self.deliver_once():
                        continue
                except Exception:
                    log.exception("channel.worker_failed")
            await asyncio.sleep(self.settings.poll_seconds)
