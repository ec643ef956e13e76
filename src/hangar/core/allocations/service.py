"""Allocations through their lifecycle, and their cost. Services never commit; the caller does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.allocations.models import Allocation, AllocationStatus
from hangar.core.allocations.repository import AllocationRepository
from hangar.core.billing.service import BillingService, cost_minor
from hangar.core.clock import utcnow
from hangar.core.errors import Conflict, InvalidInput, NotFound
from hangar.core.hosts import rules as host_rules

A = AllocationStatus
MAX_GPUS = 64


class AllocationService:
    """Request, provision, activate, release and bill allocations."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = AllocationRepository(session)
        self.billing = BillingService(session)

    async def request(
        self,
        team_id: str,
        user_id: str | None,
        *,
        sku: str,
        region: str,
        price_per_hour_minor: int,
        gpu_model: str | None,
        gpus_total: int,
        ssh_key_ids: Sequence[str] = (),
    ) -> Allocation:
        """A new `requested` allocation (placement is the provisioning job's)."""
        if gpu_model is None and gpus_total != 0:
            raise InvalidInput("a CPU SKU has no GPUs")
        if gpu_model is not None and not 1 <= gpus_total <= MAX_GPUS:
            raise InvalidInput(f"gpus_total must be 1 to {MAX_GPUS}")
        if price_per_hour_minor < 0:
            raise InvalidInput("a price is not negative")
        return await self.repo.add(
            Allocation(
                team_id=team_id,
                user_id=user_id,
                sku=sku,
                region=host_rules.region(region),
                price_per_hour_minor=price_per_hour_minor,
                gpu_model=gpu_model,
                gpus_total=gpus_total,
                ssh_key_ids=list(ssh_key_ids),
            )
        )

    async def get(self, team_id: str | None, allocation_id: str) -> Allocation:
        """A team's allocation (any team's when `team_id` is None), else NotFound."""
        row = await self.repo.get(allocation_id)
        if row is None or (team_id is not None and row.team_id != team_id):
            raise NotFound("allocation not found", code="allocation_not_found")
        return row

    async def claim(self, limit: int = 10) -> list[Allocation]:
        """Take up to `limit` requested allocations to provision (each claimed by one caller)."""
        claimed = []
        for allocation_id in await self.repo.oldest(A.REQUESTED, limit):
            row = await self.repo.move(
                allocation_id,
                A.REQUESTED,
                A.PROVISIONING,
                claimed_at=utcnow(),
                attempts=Allocation.attempts + 1,
            )
            if row is not None:
                claimed.append(row)
        return claimed

    async def _move(
        self, row: Allocation, target: AllocationStatus, **values: object
    ) -> Allocation:
        moved = await self.repo.move(row.id, row.status, target, **values)
        if moved is None:
            raise Conflict(f"allocation is no longer {row.status}")
        return moved

    async def activate(self, row: Allocation, host_id: str, capsule_id: str) -> Allocation:
        """Its machine runs: `active` (billing starts now)."""
        return await self._move(
            row, A.ACTIVE, host_id=host_id, capsule_id=capsule_id, active_at=utcnow()
        )

    async def fail(self, row: Allocation, reason: str) -> Allocation:
        """Provisioning gave up: `failed` (nothing was billed: it never became active)."""
        return await self._move(
            row, A.FAILED, status_reason=reason[:500], billing_stopped_at=utcnow()
        )

    async def release(self, row: Allocation) -> Allocation:
        """The owner's release: `releasing` (again, after a failed one); idempotent once asked."""
        if row.status in (A.RELEASING, A.RELEASED):
            return row
        return await self._move(row, A.RELEASING, release_requested_at=utcnow())

    async def released(self, row: Allocation) -> Allocation:
        """Its machine is gone: `released`, billed up to now."""
        now = utcnow()
        await self.accrue(row, now)
        stopped = row.billing_stopped_at or now  # a retried release bills nothing more
        return await self._move(row, A.RELEASED, released_at=now, billing_stopped_at=stopped)

    async def release_failed(self, row: Allocation, reason: str) -> Allocation:
        """Releasing gave up after its retries: `release_failed`; billing stops here."""
        now = utcnow()
        await self.accrue(row, now)
        stopped = row.billing_stopped_at or now
        return await self._move(
            row, A.RELEASE_FAILED, status_reason=reason[:500], billing_stopped_at=stopped
        )

    async def force_release(self, row: Allocation) -> Allocation:
        """An admin's release: ends a `release_failed` one at once, else as the owner's."""
        if row.status == A.RELEASE_FAILED:
            now = utcnow()
            stopped = row.billing_stopped_at or now
            return await self._move(row, A.RELEASED, released_at=now, billing_stopped_at=stopped)
        return await self.release(row)

    async def accrue(self, row: Allocation, now: datetime | None = None) -> int:
        """Debit what it cost since the last accrual (per second at its price); how much."""
        if row.active_at is None:
            return 0
        end = now or utcnow()
        if row.billing_stopped_at is not None:  # released, or given up on: not billed after
            end = min(end, row.billing_stopped_at)
        total = cost_minor(row.price_per_hour_minor, int((end - row.active_at).total_seconds()))
        before = row.billed_minor
        if total <= before or not await self.repo.set_billed(row.id, before, total):
            return 0
        # The step's id is the new total: unique per allocation, so a retry posts nothing twice.
        await self.billing.debit(
            row.team_id, total - before, f"accrual:{row.id}:{total}", "usage", row.id
        )
        row.billed_minor = total
        return total - before
