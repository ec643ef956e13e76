"""Hangar's own credentials: team API keys and user JWTs (header or WebSocket subprotocol)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from hangar.core.apikeys.service import ApiKeyService
from hangar.core.auth.service import AuthService
from hangar.core.db.uow import checkpoint
from hangar.core.identity.principal import Principal
from hangar.web.authn.base import AuthContext
from hangar.web.credentials import bearer_token


async def api_key_principal(key: str, ctx: AuthContext) -> Principal:
    """The principal of a presented API key (cached briefly, by hash)."""
    # Keys are looked up by hash; the prefix only names keys a face mints.
    service = ApiKeyService(ctx.session, prefix="", cache=ctx.platform.api_key_principals)
    principal = await service.authenticate(key)
    # Persist the throttled last-used stamp even when the route itself only reads; most
    # requests change nothing, and skipping their empty commit halves auth's cost.
    if ctx.session.dirty:
        await checkpoint(ctx.session)
    return principal


async def user_jwt_principal(token: str, ctx: AuthContext) -> Principal:
    """The principal of a Hangar user JWT, checked against the database."""
    platform = ctx.platform
    return await AuthService(ctx.session, platform.hasher, platform.user_tokens).authenticate(token)


class ApiKeyAuthenticator:
    """`X-API-Key: <key>`; a team's key authenticates in every face, whichever minted it."""

    name = "api_key"
    challenge: str | None = "X-API-Key"

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The key's principal, None without the header."""
        key = conn.headers.get("x-api-key")
        return None if key is None else await api_key_principal(key, ctx)


class UserJwtAuthenticator:
    """`Authorization: Bearer <Hangar user JWT>`."""

    name = "user_jwt"
    challenge: str | None = "Authorization: Bearer <token>"

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The token's principal, None without a bearer token."""
        token = bearer_token(conn)
        return None if token is None else await user_jwt_principal(token, ctx)
