"""Balances and their ledger. Services never commit; the caller does."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.billing.models import BillingAccount, EntryKind, LedgerEntry
from hangar.core.billing.repository import BillingRepository
from hangar.core.errors import InvalidInput
from hangar.core.pagination import Page, PageRequest

MAX_AMOUNT_MINOR = 10**12  # ten billion in major units: beyond any one payment or charge


def cost_minor(price_per_hour_minor: int, seconds: int) -> int:
    """What `seconds` cost at a price per hour, in minor units, rounded down."""
    return price_per_hour_minor * max(seconds, 0) // 3600


class BillingService:
    """Credit payments and debit usage, each exactly once per external event id."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = BillingRepository(session)

    async def account(self, team_id: str) -> BillingAccount:
        """A team's account, made empty on first use."""
        await self.repo.ensure_account(team_id)
        account = await self.repo.account(team_id)
        assert account is not None  # just ensured, in this transaction
        return account

    async def _post(
        self,
        kind: EntryKind,
        team_id: str,
        amount_minor: int,
        external_id: str,
        reason: str,
        allocation_id: str | None,
    ) -> LedgerEntry | None:
        if isinstance(amount_minor, bool) or not 0 < amount_minor <= MAX_AMOUNT_MINOR:
            raise InvalidInput(f"amount must be 1 to {MAX_AMOUNT_MINOR} minor units")
        if not 0 < len(external_id) <= 255:
            raise InvalidInput("external id must be 1-255 characters")
        await self.repo.ensure_account(team_id)
        return await self.repo.post(
            team_id, kind, amount_minor, external_id, reason[:64], allocation_id
        )

    async def credit(
        self, team_id: str, amount_minor: int, external_id: str, reason: str = "payment"
    ) -> LedgerEntry | None:
        """Credit a payment once; None when this event was credited before."""
        return await self._post(EntryKind.CREDIT, team_id, amount_minor, external_id, reason, None)

    async def debit(
        self,
        team_id: str,
        amount_minor: int,
        external_id: str,
        reason: str = "usage",
        allocation_id: str | None = None,
    ) -> LedgerEntry | None:
        """Debit usage once; None when this event was debited before. Balances may go below 0."""
        return await self._post(
            EntryKind.DEBIT, team_id, amount_minor, external_id, reason, allocation_id
        )

    async def balance(self, team_id: str) -> int:
        """A team's balance in minor units."""
        return (await self.account(team_id)).balance_minor

    async def ledger(self, team_id: str, page: PageRequest | None = None) -> Page[LedgerEntry]:
        """A team's entries, newest first."""
        return await self.repo.entries(team_id, page or PageRequest())
