"""Authenticating a caller by `X-API-Key` or a user JWT; shared by every face."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hangar.core.apikeys.service import ApiKeyService
from hangar.core.auth.service import AuthService
from hangar.core.db.uow import checkpoint
from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.core.platform import Platform
from hangar.web import idempotency
from hangar.web.credentials import bearer_token


async def authenticate_key_or_user(
    conn: HTTPConnection, session: AsyncSession, platform: Platform
) -> Principal:
    """`X-API-Key` (checked first, no fallback) or a user JWT; HTTP and WebSocket alike.

    A team's key authenticates in every face, whichever face minted it.
    """
    key = conn.headers.get("x-api-key")
    if key is not None:
        # Keys are looked up by hash; the prefix only names keys a face mints.
        principal = await ApiKeyService(session, prefix="").authenticate(key)
        # Persist the throttled last-used stamp even when the route itself only reads; most
        # requests change nothing, and skipping their empty commit halves auth's cost.
        if session.dirty:
            await checkpoint(session)
        await idempotency.guard(conn, principal)
        return principal
    token = bearer_token(conn)
    if token is None:
        raise Unauthenticated("X-API-Key or Authorization: Bearer <token> required")
    principal = await AuthService(session, platform.hasher, platform.user_tokens).authenticate(
        token
    )
    await idempotency.guard(conn, principal)
    return principal
