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
        self._closed = asyncio.Event()

    def close(self) -> None:
        """End every subscription (the server is stopping); later `next` calls return None."""
        self._closed.set()

    async def next(self, queue: asyncio.Queue[Event], timeout: float) -> Event | None:
        """The next event, None once the bus is closed; TimeoutError after `timeout`."""
        if self._closed.is_set():
            return None
        get = asyncio.ensure_future(queue.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {get, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
            if not get.done():
                get.cancel()
        if get in done:
            return get.result()
        if closed in done:
            return None
        raise TimeoutError

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
