"""Throttling the endpoints that check a secret or mint a token, per account and per address.

One `Throttle` per platform, shared by every face, so a client cannot spread its guesses
over faces. Counts live in memory, or in Redis when `HANGAR_REDIS_URL` is set (then every
replica shares them). Every attempt counts, success or not: a limit that only counted
failures would let a burst of concurrent guesses all pass before the first had failed.
"""

from __future__ import annotations

import ipaddress
import math
import time
import weakref
from typing import Annotated

import structlog
from fastapi import Depends
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from hangar.core.config import CoreSettings
from hangar.core.platform import Platform

log = structlog.get_logger("hangar.web.throttle")
_THROTTLES: weakref.WeakKeyDictionary[Platform, Throttle] = weakref.WeakKeyDictionary()


class TooManyAttempts(HTTPException):
    """Too many attempts from this account or address; `Retry-After` says when to retry."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            f"too many attempts; retry in {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
        )


def _storage(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    # `limits` speaks redis-py (a dependency already) through the `async+` form of the URL.
    return RedisStorage(f"async+{redis_url}", wrap_exceptions=True, implementation="redispy")


def client_address(conn: HTTPConnection) -> str:
    """Who is asking: the peer address (uvicorn resolves trusted proxies' forwarded headers).

    An IPv6 client usually holds a whole /64, so it is counted as one.
    """
    host = conn.client.host if conn.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Throttle:
    """Moving-window limits on sign-in and token attempts."""

    def __init__(self, settings: CoreSettings) -> None:
        # Also where the request rate limits count (web.ratelimit): one Redis pool a process.
        self.storage = _storage(settings.redis_url)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_account = parse_many(settings.limits.auth_per_account)
        self.per_address = parse_many(settings.limits.auth_per_address)

    async def _hit(self, items: list[RateLimitItem], *key: str) -> None:
        """Count one attempt against each of `items`; TooManyAttempts once one is spent."""
        for item in items:
            try:
                if await self.limiter.hit(item, *key):
                    continue
                stats = await self.limiter.get_window_stats(item, *key)
            except StorageError as exc:
                # Sign-in must not depend on Redis being up: count nothing while it is down.
                log.warning("throttle.storage_unavailable", error=str(exc))
                return
            raise TooManyAttempts(max(1, math.ceil(stats.reset_time - time.time())))

    async def attempt(
        self, conn: HTTPConnection, action: str = "", account: str | None = None
    ) -> None:
        """Count an attempt from this client, and at `action` for `account` when one is named.

        The address is counted first: a client spraying guesses over many accounts spends
        its own allowance, not theirs.
        """
        await self._hit(self.per_address, "address", client_address(conn))
        if account is not None:
            await self._hit(self.per_account, "account", action, account)


def throttle_of(platform: Platform) -> Throttle:
    """The platform's throttle (one for all faces of a process)."""
    throttle = _THROTTLES.get(platform)
    if throttle is None:
        throttle = _THROTTLES[platform] = Throttle(platform.settings)
    return throttle


async def get_throttle(conn: HTTPConnection) -> Throttle:
    """The serving platform's throttle."""
    return throttle_of(conn.app.state.platform)


ThrottleDep = Annotated[Throttle, Depends(get_throttle)]


async def per_address(conn: HTTPConnection, throttle: ThrottleDep) -> None:
    """A route dependency: count an attempt from this client address before the route runs
    (for routes whose secret names no account: host registration and refresh, OAuth)."""
    await throttle.attempt(conn)
