"""Browser sessions: a user JWT in an HttpOnly cookie, with double-submit CSRF protection.

`issue_session` sets two cookies after a sign-in: the session (HttpOnly, SameSite=Lax,
Secure over HTTPS) and a CSRF token that page script can read. A request authenticated by
the cookie that changes anything (any method but GET, HEAD, OPTIONS) must echo that token in
`X-CSRF-Token`, or it is refused with 403: a cross-site form can make the browser send the
cookie, but cannot read the token. SameSite=Lax already keeps the cookie off most cross-site
subrequests; the token covers the rest (same-site subdomains, old browsers).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response

from hangar.core.errors import Forbidden
from hangar.core.identity.principal import Principal
from hangar.web.authn.base import AuthContext
from hangar.web.authn.builtin import user_jwt_principal

SESSION_COOKIE = "hangar_session"
CSRF_COOKIE = "hangar_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_https(conn: HTTPConnection, *, trust_forwarded: bool = False) -> bool:
    """Whether the client reached us over HTTPS.

    Behind a proxy uvicorn trusts (`--forwarded-allow-ips`), the scheme already reflects
    `X-Forwarded-Proto`; `trust_forwarded` reads the header itself, for a deployment that
    knows every peer is its own proxy.
    """
    if conn.url.scheme in ("https", "wss"):
        return True
    if not trust_forwarded:
        return False
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return forwarded == "https"


def issue_session(response: Response, token: str, *, secure: bool, max_age: int) -> str:
    """Set the session and CSRF cookies for a freshly signed-in user token; the CSRF token."""
    csrf = secrets.token_urlsafe(32)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
    # Readable by the page's script (not HttpOnly): it echoes the value in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=secure, httponly=False, samesite="lax"
    )
    return csrf


def clear_session(response: Response, *, secure: bool) -> None:
    """Sign the browser out."""
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly, samesite="lax")


def check_csrf(conn: HTTPConnection) -> None:
    """Refuse a cookie-authenticated mutation whose X-CSRF-Token is not the CSRF cookie."""
    if conn.scope["type"] == "websocket":
        # No CSRF token on a handshake: a cross-site page may not open one with our cookie.
        origin = conn.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != conn.headers.get("host"):
            raise Forbidden("cross-origin WebSocket refused", code="csrf_failed")
        return
    if conn.scope.get("method", "GET") in SAFE_METHODS:
        return
    cookie = conn.cookies.get(CSRF_COOKIE, "")
    header = conn.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise Forbidden("missing or wrong X-CSRF-Token", code="csrf_failed")


class SessionCookieAuthenticator:
    """The `hangar_session` cookie (a user JWT), CSRF-checked for mutations."""

    name = "session_cookie"
    challenge: str | None = "a session cookie"

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The session's principal, None without the cookie; 403 for a forged mutation."""
        token = conn.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        check_csrf(conn)
        return await user_jwt_principal(token, ctx)
