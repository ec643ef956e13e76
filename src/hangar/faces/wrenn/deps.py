"""Authentication and service wiring for Wrenn routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hangar.core.apikeys.service import ApiKeyService
from hangar.core.auth.service import AuthService
from hangar.core.capsules.service import CapsuleService
from hangar.core.capsules.snapshots import SnapshotService
from hangar.core.capsules.usage import UsageService
from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.core.identity.service import TeamService, UserService
from hangar.core.platform import Platform
from hangar.faces.wrenn.settings import WrennSettings
from hangar.web.auth import authenticate_key_or_user as shared_authenticate
from hangar.web.credentials import bearer_token
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


async def user_principal(request: Request, auth: AuthDep) -> Principal:
    """A caller authenticated by a user JWT (Wrenn's bearerAuth)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("Authorization: Bearer <token> required")
    return await auth.authenticate(token)


async def authenticate_key_or_user(
    conn: HTTPConnection, session: AsyncSession, platform: Platform, settings: WrennSettings
) -> Principal:
    """`X-API-Key` or a user JWT, as every face authenticates; HTTP and WebSocket alike."""
    return await shared_authenticate(conn, session, platform)


async def key_or_user_principal(
    request: HTTPConnection, platform: PlatformDep, settings: SettingsDep, session: SessionDep
) -> Principal:
    """A caller authenticated by `X-API-Key` or a user JWT (Wrenn's apiKeyAuth routes)."""
    return await authenticate_key_or_user(request, session, platform, settings)


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
