"""The uplink tunnel's wire format: frames, their kinds, the limits both ends hold to."""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

HEADER = struct.Struct(">IB")
DEFAULT_WINDOW = 256 * 1024
MAX_CHUNK = 64 * 1024  # body data is split into frames no larger than this
CONTROL_CHANNEL = 0
# Above the largest legitimate frame: DATA is at most MAX_CHUNK, but a stream message is one
# frame, and the faces forward clients' messages of up to uvicorn's 16 MiB ws_max_size
# (base64 in a JSON message: ~22 MiB). Both ends refuse anything larger.
MAX_FRAME = 32 * 1024 * 1024
MAX_INBOX_FRAMES = 16_384  # a window of tiny messages must not become a million queued objects
MAX_TASKS = 10_000  # handlers and posted frames of one session
GONE_REMEMBERED = 1024  # released channels whose late frames are still checked and dropped
STRAY_GRACE = 1024  # frames for channels released so long ago they are forgotten


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


class ProtocolViolation(Exception):
    """The peer broke the tunnel protocol; the session ends."""


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
