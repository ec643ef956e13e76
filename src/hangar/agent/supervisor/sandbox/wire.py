"""The supervisor's wire: one JSON header line, then typed length-prefixed frames.

Stdlib only, Python >= 3.9: this module runs inside sandboxes (and the agent's client reads
its constants). One connection per operation: the client sends `{"op": ...}` and a newline,
then both sides exchange frames of 1 type byte + 4-byte big-endian length + payload.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from typing import Any

from . import codes

FRAME = struct.Struct(">cI")
MAX_FRAME = 8 * 1024 * 1024
CHUNK = 256 * 1024
MAX_HEADER = 1024 * 1024
# Frame types. Client -> supervisor: stdin/upload data, control, end, abort.
STDIN, DATA, CONTROL, END, ABORT = b"I", b"D", b"C", b"Z", b"A"
# Supervisor -> client: started, stdout, stderr, final result, error.
STARTED, STDOUT, STDERR, RESULT, ERROR = b"S", b"O", b"E", b"X", b"!"
SOCKET_NAME = "supervisor.sock"


class OpError(Exception):
    """A request failed with a stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Conn:
    """Framed I/O over one accepted socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def header(self) -> dict[str, Any]:
        """Read the JSON request line."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_HEADER or not self.fill():
                raise OpError(codes.BAD_REQUEST, "no request header")
        line, self.buf = self.buf.split(b"\n", 1)
        req = json.loads(line)
        if not isinstance(req, dict):
            raise OpError(codes.BAD_REQUEST, "request header must be an object")
        return req

    def fill(self) -> bool:
        """Receive more bytes; False on end of stream."""
        try:
            data = self.sock.recv(CHUNK)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def take(self) -> tuple[bytes, bytes] | None:
        """One complete frame from the buffer, if there is one."""
        if len(self.buf) < FRAME.size:
            return None
        kind, size = FRAME.unpack_from(self.buf)
        if size > MAX_FRAME:
            raise OpError(codes.BAD_REQUEST, "frame too large")
        end = FRAME.size + size
        if len(self.buf) < end:
            return None
        frame = (kind, self.buf[FRAME.size : end])
        self.buf = self.buf[end:]
        return frame

    def frames(self) -> list[tuple[bytes, bytes]]:
        """Every complete frame already buffered."""
        out = []
        frame = self.take()
        while frame is not None:
            out.append(frame)
            frame = self.take()
        return out

    def frame(self) -> tuple[bytes, bytes] | None:
        """Block for the next frame; None on end of stream."""
        frame = self.take()
        while frame is None:
            if not self.fill():
                return None
            frame = self.take()
        return frame

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        """Send one frame."""
        self.sock.sendall(FRAME.pack(kind, len(payload)) + payload)

    def send_json(self, kind: bytes, obj: dict[str, Any]) -> None:
        """Send one JSON frame."""
        self.send(kind, json.dumps(obj).encode())


def send_error(conn: Conn, code: str, message: str) -> None:
    """Report a failure, if the client is still there to hear it."""
    with contextlib.suppress(OSError):
        conn.send_json(ERROR, {"code": code, "message": message})
