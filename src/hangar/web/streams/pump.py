"""The one pump between a client's WebSocket and an agent stream, in both directions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import WebSocket, WebSocketDisconnect

from hangar.agentproto.client import AgentStream
from hangar.agentproto.streams import AgentEvent, StreamMessage

log = structlog.get_logger("hangar.web.streams")


@dataclass(frozen=True)
class Close:
    """How to close the client's WebSocket."""

    code: int = 1000
    reason: str = ""


class Frames(ABC):
    """How one face's clients speak: their frames to agent messages, and back."""

    # Ping the client this often (None: never), to keep proxies from closing idle sockets.
    ping_seconds: float | None = None
    # The close when the agent ends the stream without a message that said how.
    ended: Close = Close()

    @abstractmethod
    async def receive(self, ws: WebSocket) -> Sequence[StreamMessage] | None:
        """The agent messages of the client's next frame; None once the client is done."""

    @abstractmethod
    async def send(self, ws: WebSocket, event: AgentEvent) -> Close | None:
        """Show the client one agent message; a Close ends the stream."""

    async def ping(self, ws: WebSocket) -> None:
        """Tell the client the stream is alive."""
        return  # by default: nothing

    async def failed(self, ws: WebSocket, exc: BaseException) -> None:
        """One side failed (the client vanishing included); the stream ends next."""
        return  # by default: nothing

    async def finish(self, stream: AgentStream) -> None:
        """Last words to the agent before the stream is closed."""
        return  # by default: nothing


async def pump(ws: WebSocket, stream: AgentStream, frames: Frames) -> None:
    """Copy messages both ways until either side ends, then close the stream and the socket."""

    async def client_to_agent() -> None:
        while (messages := await frames.receive(ws)) is not None:
            for message in messages:
                await stream.put(message)

    async def agent_to_client() -> Close | None:
        async for event in stream.events():
            close = await frames.send(ws, event)
            if close is not None:
                return close
        return None

    async def pinger(every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await frames.ping(ws)

    outbound = asyncio.create_task(agent_to_client())
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(client_to_agent()), outbound]
    if frames.ping_seconds is not None:
        tasks.append(asyncio.create_task(pinger(frames.ping_seconds)))
    close = frames.ended
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None:
                with contextlib.suppress(Exception):
                    await frames.failed(ws, exc)
            elif task is outbound and task.result() is not None:
                close = task.result()
    finally:
        for task in tasks:
            task.cancel()
        await frames.finish(stream)
        await stream.close()
        with contextlib.suppress(Exception):
            await ws.close(close.code, close.reason)


async def forward(ws: WebSocket, stream: AgentStream) -> None:
    """Carry messages both ways, unread and unchanged, until either side ends.

    For a relay of the agent protocol itself: a message of a newer agent passes too.
    """

    async def upstream() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await stream.send(json.loads(await ws.receive_text()))

    async def downstream() -> None:
        async for message in stream:
            await ws.send_text(json.dumps(message))

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.info("relay.stream_ended", error=str(task.exception()))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
