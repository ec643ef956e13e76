"""Authentication and service wiring for Wrenn routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from hangar.core.apikeys.service import ApiKeyService
from hangar.core.auth.service import AuthService
from hangar.core.capsules.usage import UsageService
from hangar.core.errors import Unauthenticated
from hangar.core.identity.principal import Principal
from hangar.core.identity.service import TeamService, UserService
from hangar.faces.wrenn.settings import WrennSettings
from hangar.web import idempotency
from hangar.web.authn import authenticate
from hangar.web.credentials import bearer_token
from hangar.web.deps import PlatformDep, SessionDep
from hangar.web.services import CapsulesDep


async def get_settings(request: HTTPConnection) -> WrennSettings:
    """This face's settings."""
    settings: WrennSettings = request.app.state.face_settings
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
    principal = await auth.authenticate(token)
    await idempotency.guard(request, principal)
    return principal


async def key_or_user_principal(
    request: HTTPConnection, platform: PlatformDep, session: SessionDep
) -> Principal:
    """A caller authenticated by Wrenn's chain: `X-API-Key` or a user JWT (apiKeyAuth)."""
    return await authenticate(request, session, platform)


UserDep = Annotated[Principal, Depends(user_principal)]
KeyOrUserDep = Annotated[Principal, Depends(key_or_user_principal)]


async def get_users(session: SessionDep) -> UserService:
    """User service for this request."""
    return UserService(session)


async def get_api_keys(
    platform: PlatformDep, session: SessionDep, settings: SettingsDep
) -> ApiKeyService:
    """API key service for this request, minting `wrn_` keys."""
    return ApiKeyService(session, prefix=settings.api_key_prefix, cache=platform.api_key_principals)


ApiKeysDep = Annotated[ApiKeyService, Depends(get_api_keys)]


async def get_teams(session: SessionDep, api_keys: ApiKeysDep) -> TeamService:
    """Team service for this request; a deleted team takes its API keys with it."""
    return TeamService(session, on_delete=(api_keys.delete_for_team,))


TeamsDep = Annotated[TeamService, Depends(get_teams)]
UsersDep = Annotated[UserService, Depends(get_users)]


async def get_usage(
    platform: PlatformDep, session: SessionDep, capsules: CapsulesDep
) -> UsageService:
    """Usage service for this request."""
    return UsageService(session, platform.fleet, capsules)


UsageDep = Annotated[UsageService, Depends(get_usage)]
