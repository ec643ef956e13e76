"""Allocations: their transition table, the named moves, accrual per second into the ledger."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from itertools import product

import pytest
from sqlalchemy import update

from hangar.core.allocations import lifecycle
from hangar.core.allocations.models import Allocation, AllocationStatus
from hangar.core.allocations.service import AllocationService
from hangar.core.billing.service import BillingService, cost_minor
from hangar.core.db import Database
from hangar.core.errors import IllegalTransition, NotFound

A = AllocationStatus
ALLOWED = {
    (A.REQUESTED, A.PROVISIONING),
    (A.REQUESTED, A.RELEASING),
    (A.PROVISIONING, A.ACTIVE),
    (A.PROVISIONING, A.FAILED),
    (A.PROVISIONING, A.RELEASING),
    (A.ACTIVE, A.RELEASING),
    (A.RELEASING, A.RELEASED),
    (A.RELEASING, A.RELEASE_FAILED),
    (A.RELEASE_FAILED, A.RELEASING),
    (A.RELEASE_FAILED, A.RELEASED),
}


def test_the_table_is_the_documented_lifecycle() -> None:
    assert {(a, b) for a, targets in lifecycle.TRANSITIONS.items() for b in targets} == ALLOWED
    for current, target in product(A, A):
        if (current, target) in ALLOWED:
            lifecycle.check_transition(current, target)
        else:
            with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
                lifecycle.check_transition(current, target)
    with pytest.raises(IllegalTransition):
        lifecycle.check_transition("no-such-status", A.ACTIVE)


async def _request(service: AllocationService, team_id: str) -> Allocation:
    return await service.request(
        team_id,
        None,
        sku="h200-sxm-slice",
        region="local",
        price_per_hour_minor=360,  # 10 minor units a hundred seconds: easy to check
        gpu_model="NVIDIA H200",
        gpus_total=1,
    )


async def test_an_allocation_lives_and_is_billed_per_second(
    core_db: Database, team_id: str
) -> None:
    async with core_db.session() as session:
        allocations = AllocationService(session)
        row = await _request(allocations, team_id)
        await session.commit()
        allocation_id = row.id

    async def claim() -> list[str]:
        async with core_db.session() as session:
            claimed = await AllocationService(session).claim(limit=100)
            await session.commit()
            return [a.id for a in claimed if a.team_id == team_id]

    # Two job replicas claim at once: the allocation is provisioned by exactly one.
    claims = await asyncio.gather(claim(), claim())
    assert sorted(claims, key=len) == [[], [allocation_id]]

    async with core_db.session() as session:
        allocations = AllocationService(session)
        row = await allocations.get(team_id, allocation_id)
        assert row.status == A.PROVISIONING
        assert row.attempts == 1
        with pytest.raises(IllegalTransition):
            await allocations.released(row)
        row = await allocations.activate(row, "host-1", "capsule-1")
        assert row.active_at is not None
        # Active for a while already: as if it had started 1000 s ago.
        await session.execute(
            update(Allocation)
            .where(Allocation.id == row.id)
            .values(active_at=row.active_at - timedelta(seconds=1000))
        )
        row = await allocations.get(team_id, allocation_id)
        assert row.active_at is not None
        assert await allocations.accrue(row, row.active_at + timedelta(seconds=99)) == 9
        assert await allocations.accrue(row, row.active_at + timedelta(seconds=100)) == 1
        assert await allocations.accrue(row, row.active_at + timedelta(seconds=100)) == 0
        row = await allocations.release(row)
        assert row.status == A.RELEASING
        assert (await allocations.release(row)).status == A.RELEASING  # asked twice: same
        row = await allocations.release_failed(row, "host did not answer")
        stopped = row.billing_stopped_at
        assert stopped is not None
        assert row.billed_minor == cost_minor(360, int((stopped - row.active_at).total_seconds()))
        # Billing stopped when the release gave up: later accruals charge nothing.
        assert await allocations.accrue(row, stopped + timedelta(hours=5)) == 0
        row = await allocations.release(row)
        assert row.status == A.RELEASING
        row = await allocations.released(row)
        assert row.status == A.RELEASED
        assert row.billed_minor == cost_minor(360, int((stopped - row.active_at).total_seconds()))
        with pytest.raises(IllegalTransition):
            await allocations.release_failed(row, "too late")
        balance = await BillingService(session).balance(team_id)
        assert balance == -row.billed_minor
        with pytest.raises(NotFound):
            await allocations.get("another-team", allocation_id)
        await session.commit()


async def test_force_release_and_failure(core_db: Database, team_id: str) -> None:
    async with core_db.session() as session:
        allocations = AllocationService(session)
        row = await _request(allocations, team_id)
        [row] = [a for a in await allocations.claim(limit=100) if a.id == row.id]
        row = await allocations.fail(row, "no host has the GPUs")
        assert row.status == A.FAILED
        with pytest.raises(IllegalTransition):
            await allocations.release(row)

        other = await _request(allocations, team_id)
        other = await allocations.release(other)  # released before it was provisioned
        other = await allocations.release_failed(other, "stuck")
        other = await allocations.force_release(other)
        assert other.status == A.RELEASED
        assert other.billed_minor == 0
        page = await allocations.repo.find(team_id=team_id, statuses=[A.RELEASED])
        assert [a.id for a in page.items] == [other.id]
        await session.commit()
