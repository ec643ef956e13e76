"""Correlation ids and access logs, as plain ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-correlation-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
log = structlog.get_logger("hangar.access")


class CorrelationMiddleware:
    """Echo or mint `X-Correlation-Id`, bind it to logs, and log one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        if "correlation_id" in state:  # an outer app (the main port) already did the work
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        cid = given.decode() if _VALID.match(given) else uuid.uuid4().hex
        state["correlation_id"] = cid
        # Mounts rewrite scope["path"] on the way in, so read it before calling the app.
        path = scope.get("root_path", "") + scope["path"]
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, cid.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=cid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                # The path only: query strings may carry codes or tokens (OAuth callbacks).
                log.info(
                    "request",
                    method=scope.get("method", "WS"),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
