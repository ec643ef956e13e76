"""FastVM's error shape, `{"error": "<message>"}`, for every failure in this face."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import structlog
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from hangar.core import errors as core
from hangar.web import errors as web
from hangar.web.errors import Details

log = structlog.get_logger("hangar.faces.fastvm")


def error_response(status: int, message: str) -> JSONResponse:
    """A response in FastVM's error shape."""
    return JSONResponse({"error": message}, status_code=status)


def _render(
    _: HTTPConnection, status: int, __: str, message: str, ___: Details | None
) -> JSONResponse:
    return error_response(status, message)


STYLE = web.ErrorStyle(
    render=_render,
    statuses=[
        (core.InvalidInput, 400, "invalid_request"),
        (core.Unauthenticated, 401, "unauthorized"),
        (core.Forbidden, 403, "forbidden"),
        (core.NotFound, 404, "not_found"),
        (core.Conflict, 409, "conflict"),
        # The spec documents no 413; an over-limit payload is bad input.
        (core.TooLarge, 400, "invalid_request"),
        (core.UpstreamError, 502, "upstream_error"),
        (core.Unavailable, 503, "host_unavailable"),
    ],
    # FastVM's messages are lower case, Starlette's router details are not.
    http_messages={404: "not found", 405: "method not allowed"},
)


def domain_response(conn: HTTPConnection, exc: core.DomainError) -> JSONResponse:
    """A domain error as FastVM renders it (a refused WebSocket upgrade too)."""
    resp = web.domain_response(STYLE, conn, exc)
    assert isinstance(resp, JSONResponse)
    return resp


@contextlib.contextmanager
def documented_as(kind: type[core.DomainError], into: type[core.DomainError]) -> Iterator[None]:
    """Report a `kind` error as `into`, for operations whose spec has no status for `kind`."""
    try:
        yield
    except kind as exc:
        raise into(exc.message, code=exc.code) from exc
