"""The control plane's correlation id, bound to every log line the agent writes for a call."""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from hangar.agentproto import correlation

_HEADER = correlation.HEADER.lower().encode()


class CorrelationMiddleware:
    """Bind the `X-Correlation-Id` of each call and stream (direct or tunneled) to its logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        given = None
        if scope["type"] in ("http", "websocket"):
            raw = dict(scope["headers"]).get(_HEADER, b"")
            given = correlation.valid(raw.decode("latin-1"))
        if given is None:  # background calls from the agent's own loops, or an old server
            await self.app(scope, receive, send)
            return
        token = correlation.current.set(given)
        try:
            with structlog.contextvars.bound_contextvars(correlation_id=given):
                await self.app(scope, receive, send)
        finally:
            correlation.current.reset(token)
