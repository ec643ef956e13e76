"""The unit of work: one session per request, job or stream operation, and its commit points.

Nothing else in Hangar calls `commit()` (tests/unit/test_unit_of_work.py holds to that). A
request's unit of work is committed once, by the face kit, after the route has produced its
response and before the response is sent, together with the request's idempotency record.
Services that must make part of their work durable before they call outside the database
(reservation first: a create's reservation is committed before the agent is asked to start
anything) say so with `checkpoint`, which is the same commit under a name that states why.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class UnitOfWork:
    """One session; committed by `commit`, rolled back and closed when the block ends."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.session = sessions()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Whatever was not committed is dropped: a failed request changes nothing after its
        # last commit point.
        await self.session.close()

    async def commit(self) -> None:
        """The unit's commit point: everything since the last one becomes durable at once."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Drop everything since the last commit point."""
        await self.session.rollback()


async def checkpoint(session: AsyncSession) -> None:
    """Make what `session` did so far durable before a call outside the database (an agent,
    a host, a provider) whose outcome must not be able to undo it, or whose wait must not
    hold database locks."""
    await session.commit()
