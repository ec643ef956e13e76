"""OIDC bearer tokens: a JWT verified against its issuer's JWKS (fetched, cached, refreshed).

The key set is fetched with httpx on first use and kept for `jwks_ttl`; a token naming a
key id the cached set lacks (the issuer rotated) triggers one refetch, but never more often
than `min_refresh_interval`, so tokens with made-up kids cannot make us hammer the issuer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import HTTPConnection

from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.web.authn.base import AuthContext
from hangar.web.credentials import bearer_token

Claims = dict[str, Any]
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")


class OidcPrincipals(Protocol):
    """Maps a verified identity to a Hangar principal (account linking is the caller's)."""

    async def principal_for(self, claims: Claims, ctx: AuthContext) -> Principal | None:
        """The principal of these verified claims, None if no account is linked."""
        ...


class JwksCache:
    """An issuer's key set, fetched lazily and refetched on an unknown kid (rate-limited)."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.http = http
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self) -> KeySet:
        self.fetches += 1
        self._fetched_at = self._clock()
        try:
            resp = await self.http.get(self.url)
            resp.raise_for_status()
            self._keys = KeySet.import_key_set(resp.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise Unauthenticated("the token's issuer keys are unavailable") from exc
        return self._keys

    async def keys_for(self, kid: str | None) -> KeySet:
        """A key set holding `kid` if the issuer has it (refetched at most once per interval)."""
        async with self._lock:
            now = self._clock()
            if self._keys is None or now - self._fetched_at >= self.ttl:
                return await self._fetch()
            stale = now - self._fetched_at >= self.min_refresh_interval
            if kid is not None and stale and not _has_kid(self._keys, kid):
                return await self._fetch()
            return self._keys


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _unverified(token: str) -> tuple[dict[str, Any], Claims] | None:
    """The header and claims of a compact JWS before any check, None if it is not one."""
    try:
        compact = jws.extract_compact(token.encode())
        claims = json.loads(compact.payload)
    except (JoseError, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    return compact.headers(), claims


class OidcAuthenticator:
    """`Authorization: Bearer <JWT from issuer>`: checks signature, `iss`, `aud` and `exp`.

    It claims only tokens whose (unverified) `iss` is its issuer and leaves every other
    bearer token to the next authenticator, so it sits before `user_jwt` in a chain.
    """

    name = "oidc"
    challenge: str | None = None

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksCache,
        principals: OidcPrincipals,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.principals = principals
        self.algorithms = list(algorithms)
        self.registry = jwt.JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )

    async def verify(self, token: str) -> Claims:
        """The claims of a token this issuer signed for this audience, else Unauthenticated."""
        parsed = _unverified(token)
        if parsed is None:
            raise Unauthenticated("malformed token")
        header, _ = parsed
        kid = header.get("kid")
        keys = await self.jwks.keys_for(kid if isinstance(kid, str) else None)
        try:
            decoded = jwt.decode(token, keys, algorithms=self.algorithms)
            self.registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("invalid or expired token") from exc
        return decoded.claims

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The linked principal, None for no bearer token or another issuer's."""
        token = bearer_token(conn)
        if token is None:
            return None
        parsed = _unverified(token)
        if parsed is None or parsed[1].get("iss") != self.issuer:
            return None
        claims = await self.verify(token)
        principal = await self.principals.principal_for(claims, ctx)
        if principal is None:
            raise Unauthenticated("no account is linked to this identity", code="not_linked")
        return principal
