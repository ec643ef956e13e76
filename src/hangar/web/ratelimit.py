"""Request rate limits per principal and route class, for every route of every face.

`rate_limit` is a dependency every face app puts before all of its routes (so it runs before
a route authenticates, and a refused request costs no database query); `RateLimitHeaders`
puts the window's `X-RateLimit-*` headers on whatever the route answers. A 429 is raised as
an `HTTPException`, which each face renders in its own error shape with the headers.

Who is counted, without authenticating twice: an API key by its hash (the value the
database finds it by, so one budget per key, never the secret itself), a user JWT by its
user and team and a host JWT (`X-Host-Token`) by its host (verified, signature only, and
remembered a minute), and anyone else by the client address. Counts live where the sign-in
throttle keeps its own (`throttle.py`): in memory, or in Redis when `HANGAR_REDIS_URL` is set,
shared by every replica.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.errors import StorageError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.core.config import RateLimitSettings
from hangar.core.errors import Unauthenticated
from hangar.core.hosts.service import HOST_AUDIENCE
from hangar.core.platform import Platform
from hangar.core.security.opaque import hash_secret
from hangar.web.credentials import bearer_token
from hangar.web.throttle import client_address, throttle_of

log = structlog.get_logger("hangar.web.ratelimit")

RouteClass = Literal["read", "write", "exec"]
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Path segments of routes that run commands or open streams: they hold an agent's resources
# far longer than a read, so they draw on their own, smaller budget.
_EXEC_SEGMENTS = frozenset({"exec", "pty", "console", "stream", "streams"})
_SCOPE_KEY = "hangar.ratelimit"
_TOKEN_CACHE_SECONDS = 60.0
_TOKEN_CACHE_SIZE = 10_000
_LIMITERS: weakref.WeakKeyDictionary[Platform, RateLimiter] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Window:
    """Where one principal stands in the current window of one route class."""

    limit: int
    remaining: int
    reset: int  # epoch seconds at which the window ends
    allowed: bool

    def headers(self) -> dict[str, str]:
        """The `X-RateLimit-*` headers of this window."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimited(HTTPException):
    """This principal's budget for this route class is spent until the window ends."""

    def __init__(self, window: Window) -> None:
        retry_after = max(1, math.ceil(window.reset - time.time()))
        super().__init__(
            429,
            f"rate limit exceeded; retry in {retry_after} seconds",
            headers={**window.headers(), "Retry-After": str(retry_after)},
        )


def route_class(conn: HTTPConnection) -> RouteClass:
    """The budget a request draws on: `exec` for commands and streams, else by method."""
    route: BaseRoute | None = conn.scope.get("route")
    # The route's template, not the request path: an id that reads "exec" is no command.
    path: str = getattr(route, "path", conn.url.path)
    if conn.scope["type"] == "websocket" or not _EXEC_SEGMENTS.isdisjoint(path.split("/")):
        return "exec"
    return "read" if conn.scope["method"] in _READ_METHODS else "write"


class RateLimiter:
    """Fixed windows aligned to the clock, one counter a principal, class and window.

    Aligned windows make a request one storage increment (no second call to learn when the
    window resets), at the price of allowing up to twice the limit across a window's edge.
    """

    def __init__(self, settings: RateLimitSettings, storage: Storage, platform: Platform) -> None:
        self.storage = storage
        self.platform = platform
        self.items: dict[RouteClass, RateLimitItem] = {
            "read": parse(settings.read),
            "write": parse(settings.write),
            "exec": parse(settings.exec),
        }
        # token hash -> (who, until): a JWT's signature is checked here once a minute, not on
        # every request (the route's own authentication checks it, and the database).
        self._tokens: dict[str, tuple[str, float]] = {}

    def principal(self, conn: HTTPConnection) -> str:
        """Whose budget a request spends (no database query, no secret kept)."""
        key = conn.headers.get("x-api-key")
        if key is not None:
            return "key:" + hash_secret(key)
        token = bearer_token(conn)
        if token is not None and (who := self._verified(token, self._user)) is not None:
            return who
        # Agents behind one NAT are hosts of their own, not one address.
        host_token = conn.headers.get("x-host-token")
        if host_token is not None and (who := self._verified(host_token, self._host)) is not None:
            return who
        # An invalid token is counted by address, so made-up ones buy no fresh budget.
        return "addr:" + client_address(conn)

    def _user(self, token: str) -> str:
        claims = self.platform.user_tokens.verify(token)
        return f"user:{claims.user_id}:{claims.team_id or '-'}"

    def _host(self, token: str) -> str:
        return f"host:{self.platform.signer.verify(token, HOST_AUDIENCE)['sub']}"

    def _verified(self, token: str, who_of: Callable[[str], str]) -> str | None:
        """Whose signed token this is, from the cache or `who_of`; None if it does not verify."""
        digest = hash_secret(token)
        now = time.monotonic()
        cached = self._tokens.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            who = who_of(token)
        except Unauthenticated:
            return None
        if len(self._tokens) >= _TOKEN_CACHE_SIZE:
            self._tokens.pop(next(iter(self._tokens)))  # the oldest entry
        self._tokens[digest] = (who, now + _TOKEN_CACHE_SECONDS)
        return who

    async def hit(self, kind: RouteClass, who: str) -> Window | None:
        """Count one request; None when the storage is down (requests are then not limited)."""
        item = self.items[kind]
        period = item.get_expiry()
        window = int(time.time() // period)
        try:
            count = await self.storage.incr(item.key_for("rate", kind, who, str(window)), period)
        except StorageError as exc:
            # Serving must not depend on Redis being up: limit nothing while it is down.
            log.warning("ratelimit.storage_unavailable", error=str(exc))
            return None
        return Window(
            limit=item.amount,
            remaining=max(0, item.amount - count),
            reset=(window + 1) * period,
            allowed=count <= item.amount,
        )


def limiter_of(platform: Platform) -> RateLimiter:
    """The platform's rate limiter (one for all faces of a process, on the throttle's storage)."""
    limiter = _LIMITERS.get(platform)
    if limiter is None:
        storage = throttle_of(platform).storage
        limiter = _LIMITERS[platform] = RateLimiter(
            platform.settings.rate_limits, storage, platform
        )
    return limiter


async def rate_limit(conn: HTTPConnection) -> None:
    """A dependency of every face route: count the request; 429 once the budget is spent."""
    limiter = limiter_of(conn.app.state.platform)
    window = await limiter.hit(route_class(conn), limiter.principal(conn))
    if window is None:
        return
    if not window.allowed:
        raise RateLimited(window)
    conn.scope[_SCOPE_KEY] = window


class RateLimitHeaders:
    """Adds the request's `X-RateLimit-*` headers to its response, whatever the route sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            window: Window | None = scope.get(_SCOPE_KEY)
            if window is not None and message["type"] in (
                "http.response.start",
                "websocket.http.response.start",
            ):
                extra = [(k.lower().encode(), v.encode()) for k, v in window.headers().items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
