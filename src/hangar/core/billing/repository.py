"""Queries of the billing feature."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.billing.models import BillingAccount, EntryKind, LedgerEntry
from hangar.core.db.upsert import insert_for
from hangar.core.ids import new_id
from hangar.core.pagination import Page, PageRequest, fetch


class BillingRepository:
    """Accounts and their ledger; every write is one idempotent or atomic statement."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure_account(self, team_id: str) -> None:
        """Make the team's account unless it exists (also when two requests make it at once)."""
        await self.session.execute(
            insert_for(self.session, BillingAccount)
            .values(team_id=team_id)
            .on_conflict_do_nothing()
        )

    async def account(self, team_id: str) -> BillingAccount | None:
        """A team's account, read afresh."""
        return await self.session.get(BillingAccount, team_id, populate_existing=True)

    async def post(
        self,
        team_id: str,
        kind: EntryKind,
        amount_minor: int,
        external_id: str,
        reason: str,
        allocation_id: str | None,
    ) -> LedgerEntry | None:
        """Record an entry and apply it to the balance; None when `external_id` was posted.

        The insert skips a known `external_id` (ON CONFLICT DO NOTHING on its unique index:
        a concurrent duplicate waits for the first and then inserts nothing), and only an
        inserted entry moves the balance, by an increment in SQL, never read-modify-write.
        """
        entry_id = new_id()
        inserted = await self.session.execute(
            insert_for(self.session, LedgerEntry)
            .values(
                id=entry_id,
                team_id=team_id,
                kind=kind,
                amount_minor=amount_minor,
                external_id=external_id,
                reason=reason,
                allocation_id=allocation_id,
            )
            .on_conflict_do_nothing(index_elements=[LedgerEntry.external_id])
            .returning(LedgerEntry.id)
        )
        if inserted.scalar_one_or_none() is None:
            return None
        delta = amount_minor if kind == EntryKind.CREDIT else -amount_minor
        balance = (
            await self.session.execute(
                update(BillingAccount)
                .where(BillingAccount.team_id == team_id)
                .values(balance_minor=BillingAccount.balance_minor + delta)
                .returning(BillingAccount.balance_minor)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one()
        await self.session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.id == entry_id)
            .values(balance_after=balance)
            .execution_options(synchronize_session=False)
        )
        return await self.session.get(LedgerEntry, entry_id, populate_existing=True)

    async def by_external_id(self, external_id: str) -> LedgerEntry | None:
        """The entry an event posted."""
        return (
            await self.session.execute(
                select(LedgerEntry).where(LedgerEntry.external_id == external_id)
            )
        ).scalar_one_or_none()

    async def entries(self, team_id: str, page: PageRequest) -> Page[LedgerEntry]:
        """A team's ledger, newest first."""
        query = (
            select(LedgerEntry)
            .where(LedgerEntry.team_id == team_id)
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id)
        )
        return await fetch(self.session, query, page)
