"""The agent's side of the uplink: each channel is served by an ASGI app, in process.

A tunneled request becomes an ASGI `http` scope and a tunneled stream a `websocket` scope,
so the agent's own app answers both exactly as it does on its socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog

from hangar.agentproto.tunnel import Channel, Frame, Kind, TunnelClosed

log = structlog.get_logger("hangar.agentproto.tunnel")

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_ASGI = {"version": "3.0", "spec_version": "2.3"}


def _scope(kind: str, head: dict[str, Any]) -> dict[str, Any]:
    target = urlsplit(str(head.get("path") or "/"))
    headers = [
        (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
        for k, v in head.get("headers", [])
    ]
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": dict(_ASGI),
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": target.path or "/",
        "raw_path": (target.path or "/").encode(),
        "query_string": target.query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("uplink", 0),
        "server": ("agent", 0),
        "state": {},
    }
    if kind == "http":
        scope["method"] = str(head.get("method") or "GET").upper()
    else:
        scope["subprotocols"] = []
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


def serve_with(app: ASGIApp) -> Callable[[Channel, Frame], Awaitable[None]]:
    """An `on_open` handler that serves every channel with `app`."""

    async def on_open(channel: Channel, head: Frame) -> None:
        if head.kind == Kind.OPEN_HTTP:
            await _serve_http(app, channel, head.json())
        else:
            await _serve_websocket(app, channel, head.json())

    return on_open


async def _serve_http(app: ASGIApp, channel: Channel, head: dict[str, Any]) -> None:
    started = False
    finished = False

    async def receive() -> Message:
        try:
            frame = await channel.receive()
        except TunnelClosed:
            return {"type": "http.disconnect"}
        if frame.kind == Kind.DATA:
            return {"type": "http.request", "body": frame.payload, "more_body": True}
        if frame.kind == Kind.END:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal started, finished
        if message["type"] == "http.response.start":
            started = True
            headers = [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])
            ]
            await channel.send_head(
                Kind.RESPONSE, {"status": message["status"], "headers": headers}
            )
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await channel.send_data(message["body"])
            if not message.get("more_body", False):
                finished = True
                await channel.send_end()

    try:
        await app(_scope("http", head), receive, send)
    except (TunnelClosed, ConnectionError):
        return
    except Exception:
        log.exception("uplink.request_failed", path=head.get("path"))
        if started:
            channel.cancel("handler failed")
            return
    if not started:
        await channel.send_head(Kind.RESPONSE, {"status": 500, "headers": []})
        await channel.send_end()
    elif not finished:
        channel.cancel("incomplete response")


async def _serve_websocket(app: ASGIApp, channel: Channel, head: dict[str, Any]) -> None:
    connected = False
    accepted = False
    closed = False

    async def receive() -> Message:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        try:
            frame = await channel.receive()
        except TunnelClosed:
            return {"type": "websocket.disconnect", "code": 1006}
        if frame.kind == Kind.TEXT:
            return {"type": "websocket.receive", "text": frame.payload.decode()}
        if frame.kind == Kind.BINARY:
            return {"type": "websocket.receive", "bytes": frame.payload}
        if frame.kind == Kind.CLOSE:
            code = int((frame.json() or {}).get("code") or 1000)
            return {"type": "websocket.disconnect", "code": code}
        return {"type": "websocket.disconnect", "code": 1006}

    async def send(message: Message) -> None:
        nonlocal accepted, closed
        kind = message["type"]
        if closed:
            raise ConnectionError("the stream is closed")
        if kind == "websocket.accept":
            accepted = True
            await channel.send_head(Kind.RESPONSE, {"status": 101, "headers": []})
        elif kind == "websocket.send":
            text = message.get("text")
            await channel.send_message(text if text is not None else message.get("bytes") or b"")
        elif kind == "websocket.close":
            closed = True
            if accepted:
                reason = str(message.get("reason") or "")
                code = int(message.get("code") or 1000)
                await channel.send_head(Kind.CLOSE, {"code": code, "reason": reason})
            else:
                await channel.send_head(Kind.RESPONSE, {"status": 403, "headers": []})
                await channel.send_end()
        elif kind == "websocket.http.response.start":
            headers = [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])
            ]
            await channel.send_head(
                Kind.RESPONSE, {"status": message["status"], "headers": headers}
            )
        elif kind == "websocket.http.response.body":
            if message.get("body"):
                await channel.send_data(message["body"])
            if not message.get("more_body", False):
                closed = True
                await channel.send_end()

    try:
        await app(_scope("websocket", head), receive, send)
    except (TunnelClosed, ConnectionError):
        return
    except Exception:
        log.exception("uplink.stream_failed", path=head.get("path"))
    if not closed:
        if accepted:
            await channel.send_head(Kind.CLOSE, {"code": 1011, "reason": "stream ended"})
        else:
            await channel.send_head(Kind.RESPONSE, {"status": 500, "headers": []})
            await channel.send_end()
