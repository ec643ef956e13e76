"""FastVM's error shape, `{"error": "<message>"}`, for every failure in this face."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hangar.core import errors as core

log = structlog.get_logger("hangar.faces.fastvm")

_STATUS: list[tuple[type[core.DomainError], int]] = [
    (core.InvalidInput, 400),
    (core.Unauthenticated, 401),
    (core.Forbidden, 403),
    (core.NotFound, 404),
    (core.Conflict, 409),
    (core.TooLarge, 400),  # the spec documents no 413; an over-limit payload is bad input
    (core.UpstreamError, 502),
    (core.Unavailable, 503),
]


def error_response(status: int, message: str) -> JSONResponse:
    """A response in FastVM's error shape."""
    return JSONResponse({"error": message}, status_code=status)


def domain_status(exc: core.DomainError) -> int:
    """The HTTP status this face gives a domain error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def domain_response(exc: core.DomainError) -> JSONResponse:
    """A domain error as FastVM renders it."""
    status = domain_status(exc)
    return error_response(status, exc.message if status != 500 else "internal error")


@contextlib.contextmanager
def documented_as(kind: type[core.DomainError], into: type[core.DomainError]) -> Iterator[None]:
    """Report a `kind` error as `into`, for operations whose spec has no status for `kind`."""
    try:
        yield
    except kind as exc:
        raise into(exc.message, code=exc.code) from exc


def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, core.DomainError)
    return domain_response(exc)


def validation_message(exc: RequestValidationError) -> str:
    """The first problem of a request that failed validation, in one line."""
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return "invalid JSON body"
    first = errs[0] if errs else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_message(exc))


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 405:
        # FastVM documents no 405: a method a path does not serve is a route that is not there.
        resp = error_response(404, f"not found: {detail.lower()}")
    else:
        resp = error_response(exc.status_code, detail.lower() if exc.status_code == 404 else detail)
    if exc.headers and exc.status_code != 405:
        resp.headers.update(exc.headers)
    return resp


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error")


def install(app: FastAPI) -> None:
    """Render every error of `app` in FastVM's shape."""
    app.add_exception_handler(core.DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
