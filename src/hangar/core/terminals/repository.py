"""Queries of the terminals feature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.pagination import Page, PageRequest, fetch
from hangar.core.terminals import lifecycle
from hangar.core.terminals.models import (
    GuestState,
    SessionStatus,
    TerminalGuest,
    TerminalSession,
)


class TerminalRepository:
    """Reads and writes sessions and guests; state changes are conditional UPDATEs."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: TerminalSession | TerminalGuest) -> None:
        """Store a new row (a duplicate alias or joiner raises IntegrityError at the flush)."""
        self.session.add(row)
        await self.session.flush()

    async def get(self, session_id: str) -> TerminalSession | None:
        """A session by id, read afresh."""
        return await self.session.get(TerminalSession, session_id, populate_existing=True)

    async def by_alias(self, alias: str) -> TerminalSession | None:
        """A session by its alias."""
        return (
            await self.session.execute(
                select(TerminalSession).where(TerminalSession.alias == alias)
            )
        ).scalar_one_or_none()

    async def owned(
        self, owner_id: str, statuses: Sequence[str] | None, page: PageRequest
    ) -> Page[TerminalSession]:
        """An owner's sessions, newest first, optionally of some statuses."""
        where: list[Any] = [TerminalSession.owner_id == owner_id]
        if statuses:
            where.append(TerminalSession.status.in_(list(statuses)))
        query = (
            select(TerminalSession)
            .where(*where)
            .order_by(TerminalSession.created_at.desc(), TerminalSession.id)
        )
        return await fetch(self.session, query, page)

    async def move(
        self, session_id: str, current: str, target: SessionStatus, **values: Any
    ) -> bool:
        """Move a session from `current` to `target` (the table allowing); False if it moved on.

        Conditional on `current`, so of two racing changes (an end and a start finishing) one
        wins and the other sees the row has moved on instead of overwriting it.
        """
        lifecycle.check_transition(current, target)
        result = await self.session.execute(
            update(TerminalSession)
            .where(TerminalSession.id == session_id, TerminalSession.status == current)
            .values(status=target, **values)
            .returning(TerminalSession.id)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none() is not None

    async def guest(self, joiner_uuid: str) -> TerminalGuest | None:
        """A guest request by its joiner uuid, read afresh."""
        return (
            await self.session.execute(
                select(TerminalGuest)
                .where(TerminalGuest.joiner_uuid == joiner_uuid)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()

    async def guests(
        self, session_id: str, states: Sequence[GuestState] | None = None
    ) -> list[TerminalGuest]:
        """A session's guest requests, oldest first."""
        stmt = select(TerminalGuest).where(TerminalGuest.session_id == session_id)
        if states:
            stmt = stmt.where(TerminalGuest.state.in_(list(states)))
        rows = await self.session.execute(
            stmt.order_by(TerminalGuest.created_at, TerminalGuest.id).execution_options(
                populate_existing=True
            )
        )
        return list(rows.scalars().all())

    async def joined(self, user_id: str, page: PageRequest) -> Page[TerminalGuest]:
        """Approved guest entries of a user, newest first."""
        query = (
            select(TerminalGuest)
            .where(TerminalGuest.user_id == user_id, TerminalGuest.state == GuestState.APPROVED)
            .order_by(TerminalGuest.decided_at.desc(), TerminalGuest.id)
        )
        return await fetch(self.session, query, page)

    async def move_guest(
        self, guest_id: str, current: str, target: GuestState, **values: Any
    ) -> bool:
        """Move a guest from `current` to `target`; False if another decision came first.

        Conditional on `current`, so an approve racing a reject (two owner tabs) cannot both
        land: the second matches nothing.
        """
        lifecycle.check_guest_transition(current, target)
        result = await self.session.execute(
            update(TerminalGuest)
            .where(TerminalGuest.id == guest_id, TerminalGuest.state == current)
            .values(state=target, **values)
            .returning(TerminalGuest.id)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none() is not None
