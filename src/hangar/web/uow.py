"""Each request's unit of work: opened before the route, committed once, before its answer.

Plain ASGI middleware inside every face. The route and its services work on the unit's one
session and never commit; the answer is held back until the route has finished it, then the
unit commits (storing the request's idempotency record with it, `web/idempotency.py`) and only
then is the answer sent. A client that sees a success has a durable change; a commit that
fails answers the face's 500 instead. A streamed answer (more than one body message) is
committed at its first chunk, before any byte leaves. A failed route's work is rolled back.
WebSockets get one unit per connection, and their handlers commit once per operation.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.core.db.uow import UnitOfWork
from hangar.core.platform import Platform
from hangar.web import idempotency
from hangar.web.errors import INTERNAL, ErrorStyle

log = structlog.get_logger("hangar.web.uow")


def unit_of_work(conn: HTTPConnection) -> UnitOfWork | None:
    """The unit of work the face opened for this request, if any."""
    uow: UnitOfWork | None = conn.scope.get("state", {}).get("uow")
    return uow


class UnitOfWorkMiddleware:
    """Open the request's unit of work, and commit it before the answer leaves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request or WebSocket inside its unit of work."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        platform: Platform = scope["app"].state.platform
        state: dict[str, Any] = scope.setdefault("state", {})
        async with platform.db.unit_of_work() as uow:
            state["uow"] = uow
            try:
                if scope["type"] == "websocket":
                    await self.app(scope, receive, send)
                else:
                    await self._http(uow, scope, receive, send)
            finally:
                state.pop("uow", None)

    async def _http(self, uow: UnitOfWork, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []
        committed = False
        status = 0

        async def finish(streamed: bool) -> bool:
            """Commit (with the idempotency record); False when the commit failed."""
            nonlocal committed
            committed = True
            # A streamed answer's whole body is unknown: it is not stored for replay.
            store = 200 <= status < 300 and not streamed
            try:
                if store:
                    await idempotency.complete(scope, uow.session, held)
                await uow.commit()
                if not store:
                    # Given back before the answer leaves, so a repeat the client sends on
                    # reading it finds the key free.
                    await idempotency.release(scope, uow.session)
            except Exception:
                log.exception("commit failed")
                await uow.rollback()
                return False
            if store:
                idempotency.committed(scope)
            return True

        async def holding(message: Message) -> None:
            nonlocal status
            if committed:
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                held.append(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            held.append(message)
            # A streamed answer (more to come) is made durable now, before its first byte.
            if not await finish(streamed=bool(message.get("more_body", False))):
                await self._fail(scope, receive, send)
                return
            for m in held:
                await send(m)

        try:
            await self.app(scope, receive, holding)
        finally:
            # Unless its answer was stored: a failure, or no success, and a repeat runs again.
            await idempotency.release(scope, uow.session)

    @staticmethod
    async def _fail(scope: Scope, receive: Receive, send: Send) -> None:
        style: ErrorStyle | None = getattr(scope["app"].state, "error_style", None)
        if style is None:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        response = style.render(Request(scope, receive), *INTERNAL, None)
        await response(scope, receive, send)
