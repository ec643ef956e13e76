"""Queries of the allocations feature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.allocations import lifecycle
from hangar.core.allocations.models import Allocation, AllocationStatus
from hangar.core.pagination import Page, PageRequest, fetch


class AllocationRepository:
    """Reads allocations; every status change is a named conditional UPDATE."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: Allocation) -> Allocation:
        """Store a new allocation."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, allocation_id: str) -> Allocation | None:
        """An allocation by id, read afresh (its row moves by UPDATEs that bypass the session)."""
        return await self.session.get(Allocation, allocation_id, populate_existing=True)

    async def find(
        self,
        *,
        team_id: str | None = None,
        statuses: Sequence[AllocationStatus] | None = None,
        page: PageRequest | None = None,
    ) -> Page[Allocation]:
        """Allocations of a team (None: every team, for admins), newest first."""
        query = select(Allocation)
        if team_id is not None:
            query = query.where(Allocation.team_id == team_id)
        if statuses:
            query = query.where(Allocation.status.in_(list(statuses)))
        query = query.order_by(Allocation.created_at.desc(), Allocation.id)
        return await fetch(self.session, query, page or PageRequest())

    async def move(
        self, allocation_id: str, current: str, target: AllocationStatus, **values: Any
    ) -> Allocation | None:
        """Move it from `current` to `target` (the table allowing); None if it moved on first.

        Conditional on `current`, so of two racing changes (a release and the job's activate,
        or two job replicas) exactly one lands and the other learns it lost, never overwrites.
        """
        lifecycle.check_transition(current, target)
        return (
            await self.session.scalars(
                update(Allocation)
                .where(Allocation.id == allocation_id, Allocation.status == current)
                .values(status=target, **values)
                .returning(Allocation)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        ).one_or_none()

    async def oldest(self, status: AllocationStatus, limit: int) -> list[str]:
        """Ids of the oldest allocations in a status (the job's candidates to claim)."""
        rows = await self.session.execute(
            select(Allocation.id)
            .where(Allocation.status == status)
            .order_by(Allocation.created_at)
            .limit(limit)
        )
        return list(rows.scalars().all())

    async def set_billed(self, allocation_id: str, before: int, after: int) -> bool:
        """Raise what was billed from `before` to `after`; False when another accrual did.

        Conditional on `before`, so two accruals racing (two job replicas) debit one step
        once: the loser matches nothing and posts nothing.
        """
        result = await self.session.execute(
            update(Allocation)
            .where(Allocation.id == allocation_id, Allocation.billed_minor == before)
            .values(billed_minor=after)
            .returning(Allocation.id)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none() is not None
