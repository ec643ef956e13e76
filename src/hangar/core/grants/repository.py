"""Queries of the grants feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.grants.models import Grant


class GrantRepository:
    """Reads and writes grant rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, grant: Grant) -> Grant:
        """Store a new grant."""
        self.session.add(grant)
        await self.session.flush()
        return grant

    async def get(self, grant_id: str) -> Grant | None:
        """A grant by id."""
        return await self.session.get(Grant, grant_id)

    async def prune(self, purpose: str, subject_id: str, now: datetime) -> None:
        """Forget a subject's spent and expired grants of one purpose: no use to anyone."""
        await self.session.execute(
            delete(Grant).where(
                Grant.purpose == purpose,
                Grant.subject_id == subject_id,
                or_(Grant.used_at.is_not(None), Grant.expires_at <= now),
            )
        )

    async def spend(self, token_hash: str, now: datetime) -> Grant | None:
        """Mark the live grant with this hash used; the grant, or None when none was live.

        One conditional UPDATE, so of two concurrent redeems exactly one changes the row: the
        loser's UPDATE waits for the winner's commit (PostgreSQL re-checks `used_at IS NULL`
        then; SQLite serialises writers) and matches nothing.
        """
        # ORM RETURNING of the entity, refreshing any copy the session already holds.
        return (
            await self.session.scalars(
                update(Grant)
                .where(
                    Grant.token_hash == token_hash,
                    Grant.used_at.is_(None),
                    Grant.expires_at > now,
                )
                .values(used_at=now)
                .returning(Grant)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        ).one_or_none()

    async def set_outcome(self, grant_id: str, outcome_id: str) -> None:
        """Record what a redemption produced."""
        await self.session.execute(
            update(Grant)
            .where(Grant.id == grant_id)
            .values(outcome_id=outcome_id)
            .execution_options(synchronize_session=False)
        )

    async def live(self, purpose: str, subject_id: str, now: datetime) -> list[Grant]:
        """A subject's unspent, unexpired grants of one purpose, oldest first."""
        result = await self.session.execute(
            select(Grant)
            .where(
                Grant.purpose == purpose,
                Grant.subject_id == subject_id,
                Grant.used_at.is_(None),
                Grant.expires_at > now,
            )
            .order_by(Grant.created_at)
        )
        return list(result.scalars().all())
