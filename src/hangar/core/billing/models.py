"""Tables of the billing feature."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hangar.core.clock import utcnow
from hangar.core.db import Base, TimestampedModel


class EntryKind(enum.StrEnum):
    """Credits raise a balance (payments), debits lower it (usage)."""

    CREDIT = "credit"
    DEBIT = "debit"


class BillingAccount(Base):
    """A team's balance in the currency's minor unit (cents); the sum of its ledger."""

    __tablename__ = "billing_accounts"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), default="usd", server_default="usd")
    # Only ever changed by an increment in SQL next to its ledger entry (BillingRepository.post).
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerEntry(TimestampedModel):
    """One credit or debit, never changed; `external_id` makes posting it idempotent."""

    __tablename__ = "billing_ledger"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("billing_accounts.team_id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # positive; `kind` gives the sign
    # The event that caused it (a Stripe event id, an accrual step): posted once, ever.
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    reason: Mapped[str] = mapped_column(String(64))
    allocation_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    balance_after: Mapped[int | None] = mapped_column(BigInteger, default=None)
