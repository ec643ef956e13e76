"""The billing ledger: each external event is posted once, also when delivered concurrently."""

from __future__ import annotations

import asyncio

import pytest

from hangar.core.billing.models import EntryKind
from hangar.core.billing.service import BillingService, cost_minor
from hangar.core.db import Database
from hangar.core.errors import InvalidInput


async def _credit(db: Database, team_id: str, event_id: str, amount: int) -> bool:
    async with db.session() as session:
        entry = await BillingService(session).credit(team_id, amount, event_id)
        await session.commit()
        return entry is not None


async def test_a_payment_event_credits_once(core_db: Database, team_id: str) -> None:
    event = f"evt_{team_id}"
    assert await _credit(core_db, team_id, event, 5000)
    assert not await _credit(core_db, team_id, event, 5000)  # the webhook's retry
    # Delivered three more times at once: nothing more is credited.
    assert (
        await asyncio.gather(*(_credit(core_db, team_id, event, 5000) for _ in range(3)))
        == [False] * 3
    )
    results = await asyncio.gather(
        *(_credit(core_db, team_id, f"{event}-b", 250) for _ in range(5))
    )
    assert sorted(results) == [False] * 4 + [True]

    async with core_db.session() as session:
        billing = BillingService(session)
        entry = await billing.debit(team_id, 1250, f"usage-{team_id}", allocation_id="a1")
        assert entry is not None
        assert entry.kind == EntryKind.DEBIT
        assert entry.balance_after == 4000
        assert await billing.balance(team_id) == 4000
        ledger = await billing.ledger(team_id)
        assert sorted(e.amount_minor for e in ledger.items) == [250, 1250, 5000]
        assert (
            sum(
                e.amount_minor if e.kind == EntryKind.CREDIT else -e.amount_minor
                for e in ledger.items
            )
            == 4000
        )
        with pytest.raises(InvalidInput):
            await billing.credit(team_id, 0, "evt-zero")
        await session.commit()


def test_cost_is_per_second_rounded_down() -> None:
    assert cost_minor(3600, 1) == 1
    assert cost_minor(250, 3600) == 250
    assert cost_minor(250, 14) == 0  # 0.97 of a cent
    assert cost_minor(250, -5) == 0
