"""The one error path of every face: four handlers, shaped by the face's `ErrorStyle`.

A face supplies only a status table (domain error class -> HTTP status and generic code) and
a renderer that sees the request (for the correlation id) and the per-field `details`; every
failure inside the face, including unknown paths, wrong methods and unexpected exceptions,
goes through here and so leaves in the face's shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.core.errors import DomainError
from hangar.core.idempotency.service import KeyReused

log = structlog.get_logger("hangar.web.errors")

Details = list[dict[str, Any]]
"""Per-field problems of a request that failed validation: `{"field", "message", "type"}`."""

Renderer = Callable[[HTTPConnection, int, str, str, Details | None], Response]
"""`(request, status, code, message, details) -> Response` in the face's wire shape."""

INTERNAL = (500, "internal_error", "internal error")

# Errors of the kit's own pieces, the same in every face; a face's table may override them.
KIT_STATUSES: Sequence[tuple[type[DomainError], int, str]] = (
    (KeyReused, 422, "idempotency_key_reused"),
)

# The code a Starlette HTTP error (router 404/405, body limits, throttling) is given.
HTTP_CODES: Mapping[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "invalid_request",
    429: "rate_limited",
}


@dataclass(frozen=True, slots=True)
class ErrorStyle:
    """How one face renders failures; the handlers themselves are shared."""

    render: Renderer
    statuses: Sequence[tuple[type[DomainError], int, str]]
    """Domain error class -> (HTTP status, generic code); the first matching entry wins."""
    known_codes: frozenset[str] = frozenset()
    """Core codes the face's clients know by name, shown as they are (else the generic one)."""
    http_messages: Mapping[int, str] = field(default_factory=dict)
    """Messages the face shows for Starlette's HTTP errors in place of their detail."""

    def domain(self, exc: DomainError) -> tuple[int, str, str]:
        """The status, code and message this face gives a domain error."""
        for kind, status, generic in (*self.statuses, *KIT_STATUSES):
            if isinstance(exc, kind):
                return status, exc.code if exc.code in self.known_codes else generic, exc.message
        return INTERNAL


def domain_response(style: ErrorStyle, conn: HTTPConnection, exc: DomainError) -> Response:
    """A domain error in the face's shape (also for refusing a WebSocket upgrade)."""
    status, code, message = style.domain(exc)
    if status == INTERNAL[0]:
        # A domain error the face's table does not know is a bug in the table: say where.
        log.error("domain error without a status", error=type(exc).__name__, exc_info=exc)
    resp = style.render(conn, status, code, message, None)
    if exc.retry_after is not None:
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def validation_details(exc: RequestValidationError) -> Details:
    """Every problem of a request that failed validation, one entry per field."""
    details: Details = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        details.append(
            {"field": where, "message": str(err.get("msg", "invalid")), "type": err.get("type")}
        )
    return details


def validation_message(exc: RequestValidationError) -> str:
    """The first problem of a request that failed validation, in one line."""
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return "invalid JSON body"
    first = errs[0] if errs else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> str:
    """Every method the path serves. Starlette's `Allow` names only its first matching route's
    (a path with a GET and a POST route would claim GET alone), and FastAPI nests included
    routers, so ask the routes, through their public `matches`, which methods fully match."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            isinstance(route, BaseRoute)
            and route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in routes
        )
    ]
    return ", ".join(allowed)


def install(app: FastAPI, style: ErrorStyle) -> None:
    """Render every error of `app` through `style`."""

    def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return domain_response(style, request, exc)

    def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message = validation_message(exc)
        return style.render(request, 400, "invalid_request", message, validation_details(exc))

    def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        message = style.http_messages.get(status, detail)
        resp = style.render(
            request, status, HTTP_CODES.get(status, "invalid_request"), message, None
        )
        if exc.headers:  # `Allow` of a 405, `Retry-After` of a 429
            resp.headers.update(exc.headers)
        if status == 405 and "allow" in resp.headers:
            resp.headers["allow"] = _allowed(request)
        return resp

    def on_unexpected(request: Request, exc: Exception) -> Response:
        # The backstop for what `UnexpectedErrors` could not answer (a response under way).
        log.exception("unhandled error", exc_info=exc)
        return style.render(request, *INTERNAL, None)

    app.state.error_style = style

    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


class UnexpectedErrors:
    """ASGI middleware inside every face: an unexpected exception becomes the face's 500 (and
    a logged traceback) right there. Starlette's own handler for `Exception` answers too, but
    re-raises, and the exception then travels up through the main port's mount to uvicorn,
    which drops the connection; answered here, it ends with the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; answer a failure before its response has started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            style: ErrorStyle | None = getattr(scope["app"].state, "error_style", None)
            if started or style is None:
                raise  # nothing left to answer with: the backstop handler logs it
            log.exception("unhandled error", exc_info=exc)
            request = Request(scope, receive)
            await style.render(request, *INTERNAL, None)(scope, receive, send)
