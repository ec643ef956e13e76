"""Request bodies every face accepts: bounded in size, and JSON that is valid Unicode.

`BodyGuard` wraps `receive`, so it costs nothing until a route reads its body, and the
errors are raised there, inside the face, whose handlers render them in its own shape:

- a body over the limit is refused (413) as soon as its declared `Content-Length` or, when
  streamed without one, its running count passes the limit, before more of it is read;
- JSON whose strings hold a lone surrogate (`"\\ud800"`, or its raw UTF-8-ish bytes) is
  refused (400): no such string can be encoded to store, hash or send anywhere, and letting
  one in would fail deep inside a route as a 500.

File uploads lift the size limit to their own (`allow_body`) before reading.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SCOPE_KEY = "hangar.body"
# Either a JSON `\uD800`-`\uDFFF` escape or the UTF-8-style bytes of a surrogate (which
# `json.loads` decodes with `surrogatepass`): only bodies that match need a full check.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class BodyTooLarge(HTTPException):
    """The request body is larger than this route accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


class InvalidUnicode(HTTPException):
    """A JSON body holds a string that is not valid Unicode."""

    def __init__(self) -> None:
        super().__init__(400, "invalid Unicode in the JSON body (a lone surrogate)")


@dataclass
class _Budget:
    """What is left for this request's body, and the JSON read so far to check."""

    limit: int
    json: bool
    received: int = 0
    started: bool = False
    chunks: list[bytes] = field(default_factory=list)


def allow_body(conn: HTTPConnection, limit: int) -> None:
    """Let this request's body be up to `limit` bytes (an upload, with its own checks)."""
    budget: _Budget | None = conn.scope.get(_SCOPE_KEY)
    if budget is not None:
        budget.limit = limit
        budget.json = False
        budget.chunks.clear()


def _is_json(scope: Scope) -> bool:
    """Whether a face would parse this body as JSON (FastAPI does with no content type too)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media.startswith(b"application/") and (
                media == b"application/json" or media.endswith(b"+json")
            )
    return True


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def has_lone_surrogate(body: bytes) -> bool:
    """Whether a JSON document holds a string (or key) with an unpaired surrogate."""
    utf8 = b"\x00" not in body[:4]  # json.loads detects UTF-16/32 by their NUL bytes
    if utf8 and not _MAYBE_SURROGATE.search(body):
        return False
    try:
        document = json.loads(body)
    except ValueError:
        return False  # not JSON at all: the route's own parsing says so
    stack: list[Any] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class BodyGuard:
    """ASGI middleware of every face: bounded bodies, and JSON without lone surrogates."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a guarded `receive`."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget = _Budget(self.max_bytes, _is_json(scope))
        scope[_SCOPE_KEY] = budget
        declared = _content_length(scope)

        async def guarded() -> Message:
            if not budget.started:
                budget.started = True
                # Refused before a byte of the body is read off the connection.
                if declared is not None and declared > budget.limit:
                    raise BodyTooLarge(budget.limit)
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk: bytes = message.get("body", b"")
            budget.received += len(chunk)
            if budget.received > budget.limit:
                raise BodyTooLarge(budget.limit)
            if budget.json:
                budget.chunks.append(chunk)
                if not message.get("more_body", False):
                    body = b"".join(budget.chunks)
                    budget.chunks.clear()
                    if has_lone_surrogate(body):
                        raise InvalidUnicode
            return message

        await self.app(scope, guarded, send)
