"""Reading credentials off a request; shared by every face and the event stream."""

from __future__ import annotations

from starlette.requests import HTTPConnection


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, if it is one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_token(conn: HTTPConnection) -> str | None:
    """The bearer token of a request or WebSocket, if present."""
    return parse_bearer(conn.headers.get("authorization"))
