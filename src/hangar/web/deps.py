"""Dependencies shared by faces: the platform and a request-scoped database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hangar.core.platform import Platform


async def get_platform(request: HTTPConnection) -> Platform:
    """The platform the serving app was built with."""
    platform: Platform = request.app.state.platform
    return platform


async def get_session(
    platform: Annotated[Platform, Depends(get_platform)],
) -> AsyncIterator[AsyncSession]:
    """A session for this request. Routes commit; anything uncommitted is rolled back."""
    async with platform.db.session() as session:
        yield session


PlatformDep = Annotated[Platform, Depends(get_platform)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
