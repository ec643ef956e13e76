"""Server-sent events: the message framing and a response that ends with its client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


def sse_message(id: str, event: str, data: bytes) -> bytes:
    """One SSE message: `id`, `event` and `data` (which must be a single line)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (id.encode(), event.encode(), data)


class EventStreamResponse(StreamingResponse):
    """Streams until the generator ends or the client goes away, whichever comes first.

    The disconnect is watched for directly (not left to the next write failing), so a
    subscription ends as soon as its client does, whatever ASGI spec version the server has.
    """

    def __init__(self, body: AsyncGenerator[bytes, None]) -> None:
        super().__init__(
            body,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type="text/event-stream",
        )
        self.events = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then each chunk; stop on `http.disconnect`."""
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            try:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                async with contextlib.aclosing(self.events) as chunks:
                    async for chunk in chunks:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the connection broke while writing: the client is gone
                pass
            group.cancel_scope.cancel()
