"""The reservation ledger that quotas and placement both read. Never commits; the caller does.

A capsule row is its own reservation: from the moment it is inserted (before any agent is
asked) it holds its team's quota (vCPUs, memory, disk) in any status but `stopped`, and its
host's room while it is starting, running or paused on it; a snapshot row holds one of its
team's snapshot slots unless it failed. Releasing is a status change of that row (destroyed,
failed start, host lost, requeued), so the ledger can never drift from the rows: there is no
counter to keep in step.

What makes check-then-insert race-free is the *hold*: before reading what a team or a host
has reserved, a reservation writes that owner's lock row (`reservation_locks`, one upsert),
and keeps it until its transaction ends, after the new row is inserted and committed.

- PostgreSQL: the upsert takes the lock row's row lock; a second reservation for the same
  owner waits on it until the first commits. Its reads come after the wait, and under READ
  COMMITTED each statement sees everything committed before it began, so it counts the
  first one's row. Owners are always taken in one order (the team, then hosts sorted by
  id), so two reservations never wait on each other in a cycle.
- SQLite: the upsert is the transaction's first write, so it takes the database's single
  write lock (waiting for it, as busy_timeout allows) before the reads that follow; those
  reads run inside the write transaction and see every earlier commit, and no other writer
  can insert until this one commits. The reads must come *after* the hold: a read before it
  would not be protected.

Releases take no hold: they only ever free room, so a racing reservation can at worst be
refused for room that was freed a moment later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.db.upsert import insert_for
from hangar.core.reservations.models import ReservationLock

# Capsules that hold room on their host (missing, error and stopped ones do not: their host
# no longer runs them). A pending capsule has no host.
HOLDS_HOST = (
    CapsuleStatus.PENDING,
    CapsuleStatus.STARTING,
    CapsuleStatus.RUNNING,
    CapsuleStatus.PAUSED,
)


@dataclass(frozen=True, slots=True)
class Reserved:
    """Resources held: by a team's live capsules, or by the capsules on one host."""

    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0


class Ledger:
    """Holds (serialising reservations per owner) and what each owner has reserved."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def hold_team(self, team_id: str) -> None:
        """Serialise the team's reservations with this transaction's, until it ends."""
        await self._hold("team", [team_id])

    async def hold_hosts(self, host_ids: Iterable[str]) -> None:
        """Serialise reservations on these hosts with this transaction's (after the team's)."""
        await self._hold("host", host_ids)

    async def _hold(self, scope: str, owners: Iterable[str]) -> None:
        keys = sorted({o for o in owners if o})  # one order everywhere: no deadlocks
        if not keys:
            return
        stmt = insert_for(self.session, ReservationLock).values(
            [{"scope": scope, "owner_id": k, "holds": 1} for k in keys]
        )
        # A write even when the row exists: that write is the lock (see the module docstring).
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[ReservationLock.scope, ReservationLock.owner_id],
                set_={"holds": ReservationLock.holds + 1},
            )
        )

    async def team(self, team_id: str) -> Reserved:
        """What a team's live capsules hold (a capsule without a disk size holds no disk)."""
        row = (
            await self.session.execute(
                select(
                    func.coalesce(func.sum(Capsule.vcpus), 0),
                    func.coalesce(func.sum(Capsule.memory_mb), 0),
                    func.coalesce(func.sum(func.coalesce(Capsule.disk_gb, 0)), 0),
                ).where(Capsule.team_id == team_id, Capsule.status != CapsuleStatus.STOPPED)
            )
        ).one()
        return Reserved(int(row[0]), int(row[1]), int(row[2]))

    async def team_snapshots(self, team_id: str) -> int:
        """Snapshot slots a team holds: every snapshot but failed ones (their files are gone)."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(Template)
            .where(Template.team_id == team_id, Template.status != SnapshotStatus.ERROR)
        )
        return int(count or 0)

    async def hosts(self, host_ids: Iterable[str]) -> dict[str, Reserved]:
        """host id -> what the capsules placed on it hold."""
        ids = sorted(set(host_ids))
        if not ids:
            return {}
        result = await self.session.execute(
            select(
                Capsule.host_id,
                func.sum(Capsule.vcpus),
                func.sum(Capsule.memory_mb),
                func.sum(func.coalesce(Capsule.disk_gb, 0)),
            )
            .where(Capsule.host_id.in_(ids), Capsule.status.in_(list(HOLDS_HOST)))
            .group_by(Capsule.host_id)
        )
        return {h: Reserved(int(v or 0), int(m or 0), int(d or 0)) for h, v, m, d in result.all()}
