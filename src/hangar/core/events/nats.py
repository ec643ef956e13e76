"""NATS JetStream: the durable sink, and the fan-in that feeds every replica's bus."""

from __future__ import annotations

import contextlib
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from hangar.core.events.bus import EventBus
from hangar.core.events.envelope import Event

log = structlog.get_logger("hangar.events.nats")


class NatsEvents:
    """Publishes events to a JetStream stream and relays the stream's subjects to a bus."""

    def __init__(self, url: str, *, stream: str, subject_prefix: str) -> None:
        self.url = url
        self.stream = stream
        self.prefix = subject_prefix
        self._nc: Client | None = None
        self._sub: Any = None

    def subject(self, event: Event) -> str:
        """One subject per event type: `<prefix>.capsule.created`."""
        return f"{self.prefix}.{event.type}"

    async def connect(self) -> None:
        """Connect and create (or update) the stream."""
        self._nc = await nats.connect(self.url, name="hangar", max_reconnect_attempts=-1)
        js = self._nc.jetstream()
        config = StreamConfig(name=self.stream, subjects=[f"{self.prefix}.>"])
        try:
            await js.stream_info(self.stream)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)

    async def publish(self, events: list[Event]) -> None:
        """Publish with `Nats-Msg-Id` = event id, so the server drops relay retries."""
        assert self._nc is not None, "connect() first"
        js = self._nc.jetstream()
        for event in events:
            await js.publish(
                self.subject(event), event.to_json(), headers={"Nats-Msg-Id": event.id}
            )

    async def feed(self, bus: EventBus) -> None:
        """Deliver every event published by any replica to this process's bus."""
        assert self._nc is not None, "connect() first"

        async def on_message(msg: Msg) -> None:
            try:
                bus.publish(Event.from_json(msg.data))
            except (ValueError, KeyError) as exc:
                log.warning("nats.bad_event", subject=msg.subject, error=str(exc))

        self._sub = await self._nc.subscribe(f"{self.prefix}.>", cb=on_message)

    async def close(self) -> None:
        """Drain and disconnect."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
