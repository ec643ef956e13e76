"""A lean keep-alive HTTP/1.1 client for latency figures.

httpx costs about 2 ms per request on a small machine, which would be charged to Hangar in
figures whose targets are a few ms. This client writes the request bytes and reads the
answer (Content-Length or chunked) on one kept-alive connection, TCP or Unix socket; one
request at a time (a lock serialises callers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class RawResponse:
    """Status and body of one answer."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.content = body

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.content)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode(errors="replace")


class RawClient:
    """One connection to `host:port` or to a Unix socket, with fixed extra headers."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host, self.port, self.unix = host, port, unix
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.authority = "agent" if unix else f"{host}:{port}"
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None:
            if self.unix:
                self._conn = await asyncio.open_unix_connection(self.unix)
            else:
                self._conn = await asyncio.open_connection(self.host, self.port)
        return self._conn

    async def request(self, method: str, path: str, body: Any = None) -> RawResponse:
        """Send one request and read its whole answer; reconnects once if the peer closed."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    return await self._once(method, path, body)
                except (ConnectionError, asyncio.IncompleteReadError):
                    await self.close()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, body: Any) -> RawResponse:
        reader, writer = await self._connect()
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.authority}\r\n{self.headers}"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        writer.write(head.encode() + payload)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = await _chunked(reader)
        else:
            data = await reader.readexactly(int(fields.get(b"content-length", b"0")))
        if fields.get(b"connection", b"").lower() == b"close":
            await self.close()
        return RawResponse(status, data)

    async def get(self, path: str) -> RawResponse:
        """GET."""
        return await self.request("GET", path)

    async def post(self, path: str, json: Any = None) -> RawResponse:
        """POST with an optional JSON body."""
        return await self.request("POST", path, json)

    async def close(self) -> None:
        """Drop the connection."""
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return data
        data += await reader.readexactly(size)
        await reader.readexactly(2)
