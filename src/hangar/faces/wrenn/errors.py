"""Wrenn's error shape, `{"error": {"code", "message"}}`, for every failure in this face."""

from __future__ import annotations

import json

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hangar.core import errors as core

log = structlog.get_logger("hangar.faces.wrenn")

_STATUS: list[tuple[type[core.DomainError], int, str]] = [
    (core.InvalidInput, 400, "invalid_request"),
    (core.Unauthenticated, 401, "unauthorized"),
    (core.Forbidden, 403, "forbidden"),
    (core.NotFound, 404, "not_found"),
    (core.Conflict, 409, "conflict"),
    (core.TooLarge, 413, "too_large"),
    (core.UpstreamError, 502, "upstream_error"),
    (core.Unavailable, 503, "host_unavailable"),
]
# Core codes Wrenn clients know by name; every other core code is shown as the generic one.
_WRENN_CODES = {
    "email_taken",
    "no_team",
    "provider_not_found",
    "invalid_state",
    "too_large",
    "agent_error",
    "host_unavailable",
}
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "invalid_request",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """A response in Wrenn's error shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, core.DomainError)
    return domain_response(exc)


def domain_response(exc: core.DomainError) -> JSONResponse:
    """A domain error as Wrenn renders it."""
    for kind, status, generic in _STATUS:
        if isinstance(exc, kind):
            code = exc.code if exc.code in _WRENN_CODES else generic
            return error_response(status, code, exc.message)
    return error_response(500, "internal_error", "internal error")


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return error_response(400, "invalid_request", "invalid JSON body")
    first = errs[0] if errs else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
    return error_response(400, "invalid_request", message)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request")
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    resp = error_response(exc.status_code, code, detail)
    if exc.headers:
        resp.headers.update(exc.headers)
    return resp


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    """Render every error of `app` in Wrenn's shape."""
    app.add_exception_handler(core.DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
