"""Many agent-protocol requests and streams multiplexed over one WebSocket (the uplink).

The agent dials the control plane once and keeps that connection; the control plane opens a
*channel* on it for every HTTP request or WebSocket stream it would otherwise have dialled.
Each binary WebSocket message is one frame: a 4-byte channel id, a 1-byte kind, a payload.

Flow control is per channel and per direction: a sender may have at most `window` bytes of
body data or stream messages unacknowledged; the receiver grants more (`CREDIT`) only as its
consumer takes data off the channel. The connection's reader never waits on a consumer, so a
slow channel neither stalls the others nor makes the receiving side buffer without bound.

This module knows no web framework: the session is given `send`/`receive` callables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import structlog

log = structlog.get_logger("hangar.agentproto.tunnel")

HEADER = struct.Struct(">IB")
DEFAULT_WINDOW = 256 * 1024
MAX_CHUNK = 64 * 1024  # body data is split into frames no larger than this
CONTROL_CHANNEL = 0


class Kind(IntEnum):
    """What a frame carries."""

    OPEN_HTTP = 1  # JSON request head; the opener's body follows as DATA..END
    OPEN_WS = 2  # JSON stream head; answered by RESPONSE (101 accepts)
    RESPONSE = 3  # JSON response head {status, headers}
    DATA = 4  # body bytes (counts against the window)
    END = 5  # no more body in this direction
    TEXT = 6  # one WebSocket text message (counts against the window)
    BINARY = 7  # one WebSocket binary message (counts against the window)
    CLOSE = 8  # JSON {code, reason}: the stream is closed
    CREDIT = 9  # 4-byte big-endian grant of more window
    CANCEL = 10  # abandon the channel (either side); payload is a reason
    PING = 11  # channel 0 keepalive; answered by PONG with the same payload
    PONG = 12
    HELLO = 13  # channel 0, JSON: the control plane's proof of identity, sent first


COUNTED = frozenset({Kind.DATA, Kind.TEXT, Kind.BINARY})

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes | None]]  # None: the connection is gone
Close = Callable[[], Awaitable[None]]


class TunnelClosed(ConnectionError):
    """The uplink connection is gone; every channel on it fails."""


class ChannelCancelled(ConnectionError):
    """The peer abandoned the channel."""


def encode(channel: int, kind: Kind, payload: bytes = b"") -> bytes:
    """One frame."""
    return HEADER.pack(channel, kind) + payload


def decode(frame: bytes) -> tuple[int, Kind, bytes]:
    """Channel, kind and payload of one frame; ValueError when malformed."""
    if len(frame) < HEADER.size:
        raise ValueError("short frame")
    channel, kind = HEADER.unpack_from(frame)
    return channel, Kind(kind), frame[HEADER.size :]


def dumps(value: Any) -> bytes:
    """A JSON payload."""
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Frame:
    """One received frame of a channel."""

    kind: Kind
    payload: bytes

    def json(self) -> Any:
        """The payload as JSON."""
        return json.loads(self.payload or b"null")


class Channel:
    """One request or stream on the tunnel, as seen from one side."""

    def __init__(self, session: TunnelSession, channel_id: int, window: int) -> None:
        self.session = session
        self.id = channel_id
        self.window = window
        self._credit = window
        self._credit_changed = asyncio.Event()
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.buffered = 0  # received, counted bytes not yet taken by the consumer
        self._unacked = 0  # taken bytes not yet granted back to the sender
        self.remote_cancelled = False
        self.remote_done = False  # END, CLOSE or CANCEL received
        self.local_done = False  # END, CLOSE or CANCEL sent
        self.released = False
        self._cancel_sent = False

    # receiving -----------------------------------------------------------------------------

    def _deliver(self, frame: Frame) -> None:
        """Called by the session's reader; never blocks."""
        if frame.kind == Kind.CREDIT:
            (grant,) = struct.unpack(">I", frame.payload[:4])
            self._credit += grant
            self._credit_changed.set()
            return
        if frame.kind in COUNTED:
            # A sender only sends with window open, so more than a window already waiting
            # means a peer ignoring flow control: refuse it rather than buffer without bound.
            if self.buffered > self.window:
                log.warning("tunnel.window_exceeded", channel=self.id)
                self._inbox.put_nowait(Frame(Kind.CANCEL, b"window exceeded"))
                self.remote_cancelled = self.remote_done = True
                self._credit_changed.set()
                self.cancel("window exceeded")
                return
            self.buffered += len(frame.payload)
        elif frame.kind in (Kind.END, Kind.CLOSE, Kind.CANCEL):
            self.remote_done = True
            if frame.kind == Kind.CANCEL:
                self.remote_cancelled = True
                self._credit_changed.set()  # wake a sender blocked on credit
        self._inbox.put_nowait(frame)

    def _fail(self) -> None:
        self._inbox.put_nowait(None)
        self._credit_changed.set()

    async def receive(self, timeout: float | None = None) -> Frame:
        """The next frame; TunnelClosed when the connection is gone, TimeoutError on `timeout`."""
        if timeout is None:
            frame = await self._inbox.get()
        else:
            async with asyncio.timeout(timeout):
                frame = await self._inbox.get()
        if frame is None:
            self._inbox.put_nowait(None)  # later calls fail the same way
            raise TunnelClosed("the agent's uplink is gone")
        if frame.kind in COUNTED:
            size = len(frame.payload)
            self.buffered -= size
            self._unacked += size
            # Grant in batches, and only to a peer still sending.
            if self._unacked >= self.window // 4 and not self.remote_done:
                grant, self._unacked = self._unacked, 0
                with contextlib.suppress(TunnelClosed):
                    await self.session.send_frame(
                        encode(self.id, Kind.CREDIT, struct.pack(">I", grant))
                    )
        return frame

    # sending -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.session.closed:
            raise TunnelClosed("the agent's uplink is gone")
        if self.remote_cancelled:
            raise ChannelCancelled("the peer abandoned the channel")

    async def _wait_credit(self, need: int) -> None:
        """Wait until at least `need` bytes (at least one) of window are open."""
        while True:
            self._check_open()
            if self._credit >= max(need, 1):
                return
            self._credit_changed.clear()
            await self._credit_changed.wait()

    async def send_head(self, kind: Kind, head: dict[str, Any]) -> None:
        """An OPEN_*, RESPONSE or CLOSE frame."""
        self._check_open()
        if kind == Kind.CLOSE:
            self.local_done = True
        await self.session.send_frame(encode(self.id, kind, dumps(head)))

    async def send_data(self, data: bytes) -> None:
        """Body bytes, in pieces no larger than the open window, waiting for credit as needed."""
        view = memoryview(data)
        while view:
            await self._wait_credit(1)
            n = min(len(view), MAX_CHUNK, self._credit)
            self._credit -= n
            await self.session.send_frame(encode(self.id, Kind.DATA, bytes(view[:n])))
            view = view[n:]

    async def send_message(self, data: str | bytes) -> None:
        """One stream message, never split: it waits for half a window (or its size) open."""
        payload = data.encode() if isinstance(data, str) else data
        # Half, not all: unacknowledged bytes under the grant batch never come back by
        # themselves, so waiting for the whole window could wait forever.
        await self._wait_credit(min(len(payload), self.window // 2))
        self._credit -= len(payload)
        kind = Kind.TEXT if isinstance(data, str) else Kind.BINARY
        await self.session.send_frame(encode(self.id, kind, payload))

    async def send_end(self) -> None:
        """No more body from this side."""
        self._check_open()
        self.local_done = True
        await self.session.send_frame(encode(self.id, Kind.END))

    def cancel(self, reason: str = "") -> None:
        """Abandon the channel: the peer stops sending and its handler is told."""
        if self._cancel_sent or self.session.closed or self.released:
            return
        self._cancel_sent = self.local_done = True
        self.session.post(encode(self.id, Kind.CANCEL, reason.encode()[:200]))

    def release(self) -> None:
        """Forget the channel; a peer still sending is told to stop."""
        if self.released:
            return
        if not self.remote_done:
            self.cancel("released")
        self.released = True
        self.session._channels.pop(self.id, None)


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
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._last_seen = time.monotonic()
        self.closed = False
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

    def _spawn(self, coro: Awaitable[None]) -> None:
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
                    channel_id, kind, payload = decode(raw)
                except ValueError:
                    log.warning("tunnel.bad_frame")
                    break
                await self._dispatch(channel_id, kind, payload)
        except Exception as exc:  # the transport's own error for a lost connection
            log.info("tunnel.connection_lost", error=type(exc).__name__)
        finally:
            pinger.cancel()
            await self.close()

    async def _dispatch(self, channel_id: int, kind: Kind, payload: bytes) -> None:
        if channel_id == CONTROL_CHANNEL:
            if kind == Kind.PING:
                self.post(encode(CONTROL_CHANNEL, Kind.PONG, payload))
            elif kind == Kind.HELLO and not self._hello.done():
                with contextlib.suppress(ValueError):
                    self._hello.set_result(json.loads(payload))
            return
        channel = self._channels.get(channel_id)
        if kind in (Kind.OPEN_HTTP, Kind.OPEN_WS):
            if self._on_open is None or channel is not None:
                self.post(encode(channel_id, Kind.CANCEL, b"cannot open channels here"))
                return
            channel = Channel(self, channel_id, self.window)
            self._channels[channel_id] = channel
            self._spawn(self._serve(channel, Frame(kind, payload)))
            return
        if channel is not None:
            channel._deliver(Frame(kind, payload))

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
            if time.monotonic() - self._last_seen > self.dead_after:
                log.warning("tunnel.peer_silent", seconds=self.dead_after)
                await self.close()
                return
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
        channel = Channel(self, self._next_id, self.window)
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
