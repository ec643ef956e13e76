"""In-process fan-out of events to listeners (SSE streams, tests, reconcilers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from hangar.core.events.envelope import Event


class EventBus:
    """Every subscriber gets every event published after it subscribed."""

    def __init__(self, queue_size: int = 1024) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()
        self._size = queue_size

    def publish(self, event: Event) -> None:
        """Deliver to every subscriber; one that fell a whole queue behind misses events."""
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of events for as long as the block runs."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self._size)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
