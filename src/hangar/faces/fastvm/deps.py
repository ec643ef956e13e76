"""Authentication and settings for FastVM routes (services: hangar.web.services)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from hangar.faces.fastvm.settings import FastVMSettings
from hangar.web.authn import authenticate
from hangar.web.deps import PlatformDep, SessionDep


async def get_settings(request: HTTPConnection) -> FastVMSettings:
    """This face's settings."""
    settings: FastVMSettings = request.app.state.face_settings
    return settings


SettingsDep = Annotated[FastVMSettings, Depends(get_settings)]


async def org_id(request: HTTPConnection, platform: PlatformDep, session: SessionDep) -> str:
    """The caller's organization (its team), by FastVM's chain (`X-API-Key` or a user JWT)."""
    principal = await authenticate(request, session, platform)
    return principal.require_team()


OrgDep = Annotated[str, Depends(org_id)]
