"""Correlation ids and access logs, as plain ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.agentproto.correlation import valid
from hangar.core import correlation

HEADER = b"x-correlation-id"
# Accepted as the id too (what many proxies and clients send); the answer names the id in
# the header the client used.
REQUEST_ID = b"x-request-id"
log = structlog.get_logger("hangar.access")


class CorrelationMiddleware:
    """Echo or mint the correlation id, bind it to logs, events and agent calls, and log one
    line per request.

    `X-Correlation-Id` or `X-Request-Id` is accepted (the first when both come) and echoed in
    each of those the client sent; a client that sent neither gets a minted `X-Correlation-Id`.
    """

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
        headers = dict(scope["headers"])
        sent = [name for name in (HEADER, REQUEST_ID) if name in headers]
        given = next(filter(None, (valid(headers[n].decode("latin-1")) for n in sent)), None)
        cid = given or correlation.mint()
        echoed = [(name, cid.encode()) for name in sent or [HEADER]]
        state["correlation_id"] = cid
        # Mounts rewrite scope["path"] on the way in, so read it before calling the app.
        path = scope.get("root_path", "") + scope["path"]
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *echoed]
            await send(message)

        with correlation.bound(cid):
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
