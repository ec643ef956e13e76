"""Wrenn's error shape, `{"error": {"code", "message"}}`, for every failure in this face."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from hangar.core import errors as core
from hangar.web import errors as web
from hangar.web.errors import Details


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """A response in Wrenn's error shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _render(
    _: HTTPConnection, status: int, code: str, message: str, __: Details | None
) -> JSONResponse:
    return error_response(status, code, message)


STYLE = web.ErrorStyle(
    render=_render,
    statuses=[
        (core.InvalidInput, 400, "invalid_request"),
        (core.Unauthenticated, 401, "unauthorized"),
        (core.Forbidden, 403, "forbidden"),
        (core.NotFound, 404, "not_found"),
        (core.Conflict, 409, "conflict"),
        (core.TooLarge, 413, "too_large"),
        (core.UpstreamError, 502, "upstream_error"),
        (core.Unavailable, 503, "host_unavailable"),
    ],
    # Core codes Wrenn clients know by name; every other core code is shown as the generic one.
    known_codes=frozenset(
        {
            "email_taken",
            "no_team",
            "provider_not_found",
            "invalid_state",
            "too_large",
            "agent_error",
            "host_unavailable",
        }
    ),
)


def domain_response(conn: HTTPConnection, exc: core.DomainError) -> JSONResponse:
    """A domain error as Wrenn renders it (a refused WebSocket upgrade too)."""
    resp = web.domain_response(STYLE, conn, exc)
    assert isinstance(resp, JSONResponse)
    return resp
