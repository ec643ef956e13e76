"""Dependencies shared by faces: the platform and a request-scoped database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hangar.core.db.uow import UnitOfWork
from hangar.core.platform import Platform
from hangar.web.uow import unit_of_work


async def get_platform(request: HTTPConnection) -> Platform:
    """The platform the serving app was built with."""
    platform: Platform = request.app.state.platform
    return platform


async def get_unit_of_work(
    conn: HTTPConnection, platform: Annotated[Platform, Depends(get_platform)]
) -> AsyncIterator[UnitOfWork]:
    """The request's unit of work: the face's (web/uow.py), which commits it before the
    answer leaves; outside a face (the main port's own routes), one of its own."""
    uow = unit_of_work(conn)
    if uow is not None:
        yield uow
        return
    async with platform.db.unit_of_work() as own:
        yield own


async def get_session(
    uow: Annotated[UnitOfWork, Depends(get_unit_of_work)],
) -> AsyncSession:
    """The session every service of this request works on; routes never commit it."""
    return uow.session


PlatformDep = Annotated[Platform, Depends(get_platform)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]
