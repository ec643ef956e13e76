"""Many agent-protocol requests and streams multiplexed over one WebSocket (the uplink).

The agent dials the control plane once and keeps that connection; the control plane opens a
*channel* on it for every HTTP request or WebSocket stream it would otherwise have dialled.
Each binary WebSocket message is one frame: a 4-byte channel id, a 1-byte kind, a payload.

Flow control is per channel and per direction: a sender may have at most `window` bytes of
body data or stream messages unacknowledged; the receiver grants more (`CREDIT`) only as its
consumer takes data off the channel. The connection's reader never waits on a consumer, so a
slow channel neither stalls the others nor makes the receiving side buffer without bound.

A peer that breaks the protocol (data beyond its window, a second response head, frames after
a channel's end or for channels never opened) loses the whole session: the other end may be a
tenant's machine, and nothing it sends may make this side hold more than a few windows.

This module knows no web framework: the session is given `send`/`receive` callables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from hangar.agentproto.tunnel_channel import Channel
from hangar.agentproto.tunnel_frames import (
    CONTROL_CHANNEL,
    COUNTED,
    DEFAULT_WINDOW,
    GONE_REMEMBERED,
    HEADER,
    MAX_CHUNK,
    MAX_FRAME,
    MAX_INBOX_FRAMES,
    MAX_TASKS,
    STRAY_GRACE,
    ChannelCancelled,
    Close,
    Frame,
    Kind,
    ProtocolViolation,
    Receive,
    Send,
    TunnelClosed,
    decode,
    dumps,
    encode,
)

log = structlog.get_logger("hangar.agentproto.tunnel")


OpenHandler = Callable[[Channel, Frame], Awaitable[None]]


class TunnelSession:
    """One uplink connection: its channels, its reader, its keepalive.

    The control plane's side opens channels (`open`); the agent's side passes `on_open`,
    which runs once per channel the control plane opens, each in its own task.
    """

    def __init__(
        self,
        send: Send,
        receive: Receive,
        close: Close | None = None,
        *,
        on_open: OpenHandler | None = None,
        window: int = DEFAULT_WINDOW,
        keepalive: float = 15.0,
        dead_after: float = 45.0,
    ) -> None:
        self._send = send
        self._receive = receive
        self._close = close
        self._on_open = on_open
        self.window = window
        self.keepalive = keepalive
        self.dead_after = dead_after
        self._channels: dict[int, Channel] = {}
        self._next_id = 1
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # Released channels, still checked so a peer cannot pile frames onto them unseen.
        self._gone: OrderedDict[int, Channel] = OrderedDict()
        self._last_opened = 0  # the highest channel id the peer opened (agent side)
        self._strays = 0
        self._pong_pending = False
        self._ping_pending_since: float | None = None
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._last_seen = time.monotonic()
        self.closed = False
        self.closed_by_violation = False  # the peer broke the protocol (or flooded this side)
        self._closer: asyncio.Future[None] | None = None
        self.done = asyncio.Event()

    # the connection ------------------------------------------------------------------------

    async def send_frame(self, frame: bytes) -> None:
        """Write one frame; frames never interleave."""
        if self.closed:
            raise TunnelClosed("the agent's uplink is gone")
        try:
            async with self._lock:
                await self._send(frame)
        except TunnelClosed:
            raise
        except Exception as exc:  # whatever the transport raises, the tunnel is gone
            await self.close()
            raise TunnelClosed(str(exc) or type(exc).__name__) from exc

    def post(self, frame: bytes) -> None:
        """Send a frame from code that cannot wait (cancellations)."""
        if not self.closed:
            self._spawn(self._post(frame))

    async def _post(self, frame: bytes) -> None:
        with contextlib.suppress(TunnelClosed):
            await self.send_frame(frame)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if len(self._tasks) >= MAX_TASKS:
            coro.close()
            log.warning("tunnel.overloaded", tasks=len(self._tasks))
            if not self.closed:
                self.closed_by_violation = True
                self._closer = asyncio.ensure_future(self.close())
            return
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Read frames until the connection ends, then fail every channel."""
        pinger = asyncio.create_task(self._keepalive())
        try:
            while True:
                raw = await self._receive()
                if raw is None:
                    break
                self._last_seen = time.monotonic()
                try:
                    if len(raw) > MAX_FRAME:
                        raise ProtocolViolation("frame too large")
                    try:
                        channel_id, kind, payload = decode(raw)
                    except ValueError as exc:
                        raise ProtocolViolation("malformed frame") from exc
                    self._dispatch(channel_id, kind, payload)
                except ProtocolViolation as exc:
                    log.warning("tunnel.protocol_violation", reason=str(exc))
                    self.closed_by_violation = True
                    break
        except Exception as exc:  # the transport's own error for a lost connection
            log.info("tunnel.connection_lost", error=type(exc).__name__)
        finally:
            pinger.cancel()
            await self.close()

    def _dispatch(self, channel_id: int, kind: Kind, payload: bytes) -> None:
        if channel_id == CONTROL_CHANNEL:
            if kind == Kind.PING and not self._pong_pending:
                # One PONG at a time: a peer pinging without reading gets no queue of them.
                self._pong_pending = True
                self._spawn(self._pong(payload[:64]))
            elif kind == Kind.PONG:
                self._ping_pending_since = None
            elif kind == Kind.HELLO and not self._hello.done():
                try:
                    hello = json.loads(payload)
                except ValueError as exc:
                    raise ProtocolViolation("malformed HELLO") from exc
                if not isinstance(hello, dict):
                    raise ProtocolViolation("malformed HELLO")
                self._hello.set_result(hello)
            return
        if kind in (Kind.OPEN_HTTP, Kind.OPEN_WS):
            # Ids only grow, so a reused or out-of-order id is as wrong as an OPEN to the opener.
            if self._on_open is None or channel_id <= self._last_opened:
                raise ProtocolViolation("unexpected OPEN")
            if len(self._tasks) >= MAX_TASKS:
                raise ProtocolViolation("too many channels")
            self._last_opened = channel_id
            channel = Channel(self, channel_id, self.window)
            self._channels[channel_id] = channel
            self._spawn(self._serve(channel, Frame(kind, payload)))
            return
        found = self._channels.get(channel_id) or self._gone.get(channel_id)
        if found is None:
            opened = self._last_opened if self._on_open is not None else self._next_id - 1
            if channel_id > opened:
                raise ProtocolViolation("frame for a channel never opened")
            # Released long ago and forgotten: a few late frames are a race, many are abuse.
            self._strays += 1
            if self._strays > STRAY_GRACE:
                raise ProtocolViolation("too many frames for released channels")
            return
        found._deliver(Frame(kind, payload))

    def _forget(self, channel: Channel) -> None:
        """A released channel: its queued frames go, its late ones are still checked."""
        self._channels.pop(channel.id, None)
        while not channel._inbox.empty():
            channel._inbox.get_nowait()
        self._gone[channel.id] = channel
        if len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)

    async def _pong(self, payload: bytes) -> None:
        try:
            with contextlib.suppress(TunnelClosed):
                await self.send_frame(encode(CONTROL_CHANNEL, Kind.PONG, payload))
        finally:
            self._pong_pending = False

    async def _serve(self, channel: Channel, head: Frame) -> None:
        assert self._on_open is not None
        try:
            await self._on_open(channel, head)
        except (TunnelClosed, ChannelCancelled):
            pass
        except Exception:
            log.exception("tunnel.handler_failed", channel=channel.id)
        finally:
            channel.release()

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.keepalive)
            now = time.monotonic()
            if now - self._last_seen > self.dead_after:
                log.warning("tunnel.peer_silent", seconds=self.dead_after)
                await self.close()
                return
            if self._ping_pending_since is not None:
                # Unanswered PING: one is enough in flight; a peer that sends but never reads
                # (its PONG never comes) is as dead as a silent one.
                if now - self._ping_pending_since > self.dead_after:
                    log.warning("tunnel.peer_not_reading", seconds=self.dead_after)
                    await self.close()
                    return
                continue
            self._ping_pending_since = now
            # Posted, not awaited: a peer that stopped reading must not stall this check.
            self.post(encode(CONTROL_CHANNEL, Kind.PING, b"%d" % time.time_ns()))

    async def close(self) -> None:
        """End the connection; every channel's pending and later calls fail."""
        if self.closed:
            return
        self.closed = True
        # Handlers are not cancelled: they see their channel fail (a disconnect) and end.
        for channel in list(self._channels.values()):
            channel._fail()
        if not self._hello.done():
            self._hello.set_exception(TunnelClosed("closed before hello"))
            self._hello.exception()  # retrieved: nobody may be waiting
        if self._close is not None:
            with contextlib.suppress(Exception):
                await self._close()
        self.done.set()

    # channels ------------------------------------------------------------------------------

    def open(self) -> Channel:
        """A new channel (control plane side)."""
        if self.closed:
            raise TunnelClosed("the agent's uplink is gone")
        channel = Channel(self, self._next_id, self.window, opened_here=True)
        self._next_id += 1
        self._channels[channel.id] = channel
        return channel

    @property
    def channel_count(self) -> int:
        """Channels currently open."""
        return len(self._channels)

    async def send_hello(self, hello: dict[str, Any]) -> None:
        """The control plane's first frame."""
        await self.send_frame(encode(CONTROL_CHANNEL, Kind.HELLO, dumps(hello)))

    async def hello(self, timeout: float) -> dict[str, Any]:
        """Wait for the control plane's HELLO (agent side; `run` must be reading)."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._hello)


__all__ = [
    "CONTROL_CHANNEL",
    "COUNTED",
    "DEFAULT_WINDOW",
    "GONE_REMEMBERED",
    "HEADER",
    "MAX_CHUNK",
    "MAX_FRAME",
    "MAX_INBOX_FRAMES",
    "MAX_TASKS",
    "STRAY_GRACE",
    "Channel",
    "ChannelCancelled",
    "Close",
    "Frame",
    "Kind",
    "OpenHandler",
    "ProtocolViolation",
    "Receive",
    "Send",
    "TunnelClosed",
    "TunnelSession",
    "decode",
    "dumps",
    "encode",
]
