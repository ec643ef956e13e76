"""One channel of the uplink tunnel: its inbox, its flow control, its protocol checks."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import TYPE_CHECKING, Any

from hangar.agentproto.tunnel_frames import (
    COUNTED,
    HEADER,
    MAX_CHUNK,
    MAX_FRAME,
    MAX_INBOX_FRAMES,
    ChannelCancelled,
    Frame,
    Kind,
    ProtocolViolation,
    TunnelClosed,
    dumps,
    encode,
)

if TYPE_CHECKING:
    from hangar.agentproto.tunnel import TunnelSession


class Channel:
    """One request or stream on the tunnel, as seen from one side."""

    def __init__(
        self, session: TunnelSession, channel_id: int, window: int, *, opened_here: bool = False
    ) -> None:
        self.session = session
        self.id = channel_id
        self.window = window
        self.opened_here = opened_here  # this side sent the OPEN: the peer answers RESPONSE
        self._head_seen = False
        self._ended = False  # END or CLOSE received
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
        """Called by the session's reader; never blocks. ProtocolViolation ends the session."""
        kind = frame.kind
        if kind == Kind.CREDIT:
            if len(frame.payload) != 4:
                raise ProtocolViolation("malformed CREDIT")
            (grant,) = struct.unpack(">I", frame.payload)
            # Grants only ever return what was sent: more would let this side overrun the peer.
            if self._credit + grant > self.window:
                raise ProtocolViolation("CREDIT beyond the window")
            self._credit += grant
            self._credit_changed.set()
            return
        if self.remote_cancelled:
            raise ProtocolViolation(f"{kind.name} after CANCEL")
        if kind == Kind.CANCEL:
            self.remote_cancelled = self.remote_done = True
            self._credit_changed.set()  # wake a sender blocked on credit
        elif self._ended:
            raise ProtocolViolation(f"{kind.name} after the channel's end")
        elif kind == Kind.RESPONSE:
            if not self.opened_here or self._head_seen:
                raise ProtocolViolation("unexpected RESPONSE")
            self._head_seen = True
        elif self.opened_here and not self._head_seen:
            raise ProtocolViolation(f"{kind.name} before RESPONSE")
        elif kind in COUNTED:
            # A sender only sends with window open, so a window already outstanding (waiting
            # here or taken but not yet granted back) means a peer ignoring flow control.
            if self.buffered + self._unacked >= self.window:
                raise ProtocolViolation("data beyond the window")
            self.buffered += len(frame.payload)
        elif kind in (Kind.END, Kind.CLOSE):
            self._ended = self.remote_done = True
        else:
            raise ProtocolViolation(f"unexpected {kind.name} on a channel")
        if self.released:
            return  # checked, then dropped: nobody reads this channel any more
        if self._inbox.qsize() >= MAX_INBOX_FRAMES:
            raise ProtocolViolation("too many frames waiting on one channel")
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
        if len(payload) + HEADER.size > MAX_FRAME:
            raise ValueError(f"a stream message is limited to {MAX_FRAME - HEADER.size} bytes")
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
        self.session._forget(self)
