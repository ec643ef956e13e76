"""Authentication and service wiring for Wrenn routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from hangar.core.apikeys.service import ApiKeyService
from hangar.core.auth.service import AuthService
from hangar.core.capsules.service import CapsuleService
from hangar.core.capsules.snapshots import SnapshotService
from hangar.core.capsules.usage import UsageService
from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.core.identity.service import TeamService, UserService
from hangar.faces.wrenn.settings import WrennSettings
from hangar.web.deps import PlatformDep, SessionDep


async def get_settings(request: HTTPConnection) -> WrennSettings:
    """This face's settings."""
    settings: WrennSettings = request.app.state.wrenn_settings
    return settings


SettingsDep = Annotated[WrennSettings, Depends(get_settings)]


async def get_auth(platform: PlatformDep, session: SessionDep) -> AuthService:
    """The auth service bound to this request's session."""
    return AuthService(session, platform.hasher, platform.user_tokens)


AuthDep = Annotated[AuthService, Depends(get_auth)]


def bearer_token(request: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer` header, if present."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def user_principal(request: Request, auth: AuthDep) -> Principal:
    """A caller authenticated by a user JWT (Wrenn's bearerAuth)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("Authorization: Bearer <token> required")
    return await auth.authenticate(token)


async def key_or_user_principal(
    request: HTTPConnection, auth: AuthDep, settings: SettingsDep, session: SessionDep
) -> Principal:
    """A caller authenticated by `X-API-Key` (checked first, no fallback) or a user JWT."""
    key = request.headers.get("x-api-key")
    if key is not None:
        principal = await ApiKeyService(session, prefix=settings.api_key_prefix).authenticate(key)
        # Persist the throttled last-used stamp even when the route itself only reads; most
        # requests change nothing, and skipping their empty commit halves auth's cost.
        if session.dirty:
            await session.commit()
        return principal
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("X-API-Key or Authorization: Bearer <token> required")
    return await auth.authenticate(token)


UserDep = Annotated[Principal, Depends(user_principal)]
KeyOrUserDep = Annotated[Principal, Depends(key_or_user_principal)]


async def get_teams(session: SessionDep) -> TeamService:
    """Team service for this request."""
    return TeamService(session)


async def get_users(session: SessionDep) -> UserService:
    """User service for this request."""
    return UserService(session)


async def get_api_keys(session: SessionDep, settings: SettingsDep) -> ApiKeyService:
    """API key service for this request, minting `wrn_` keys."""
    return ApiKeyService(session, prefix=settings.api_key_prefix)


TeamsDep = Annotated[TeamService, Depends(get_teams)]
UsersDep = Annotated[UserService, Depends(get_users)]
ApiKeysDep = Annotated[ApiKeyService, Depends(get_api_keys)]


async def get_capsules(platform: PlatformDep, session: SessionDep) -> CapsuleService:
    """Capsule service for this request."""
    return CapsuleService(session, platform.fleet, platform.settings.capsules)


CapsulesDep = Annotated[CapsuleService, Depends(get_capsules)]


async def get_snapshots(
    platform: PlatformDep, session: SessionDep, capsules: CapsulesDep
) -> SnapshotService:
    """Snapshot template service for this request."""
    return SnapshotService(session, platform.fleet, capsules)


async def get_usage(
    platform: PlatformDep, session: SessionDep, capsules: CapsulesDep
) -> UsageService:
    """Usage service for this request."""
    return UsageService(session, platform.fleet, capsules)


SnapshotsDep = Annotated[SnapshotService, Depends(get_snapshots)]
UsageDep = Annotated[UsageService, Depends(get_usage)]
