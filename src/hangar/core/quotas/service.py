"""Per-team limits on vCPUs, memory, disk and snapshots. Services never commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.config import QuotaSettings
from hangar.core.errors import InvalidInput, NotFound
from hangar.core.identity.models import Team
from hangar.core.quotas.repository import QuotaRepository
from hangar.core.quotas.rules import QuotaExceeded, QuotaReport, QuotaValues, excess
from hangar.core.reservations.ledger import Ledger


class QuotaService:
    """Read, set and enforce a team's quotas."""

    def __init__(self, session: AsyncSession, settings: QuotaSettings) -> None:
        self.session = session
        self.settings = settings
        self.repo = QuotaRepository(session)
        self.ledger = Ledger(session)

    async def limits(self, team_id: str) -> QuotaValues:
        """The limits in force: the team's own where set, else the configured defaults."""
        row = await self.repo.get(team_id)
        s = self.settings

        def pick(own: int | None, default: int) -> int:
            return default if own is None else own

        if row is None:
            return QuotaValues(s.vcpu, s.memory_mib, s.disk_gib, s.snapshot_count)
        return QuotaValues(
            pick(row.vcpu, s.vcpu),
            pick(row.memory_mib, s.memory_mib),
            pick(row.disk_gib, s.disk_gib),
            pick(row.snapshot_count, s.snapshot_count),
        )

    async def usage(self, team_id: str) -> QuotaValues:
        """What the team's live capsules reserve and how many snapshots it keeps (the ledger)."""
        held = await self.ledger.team(team_id)
        snapshots = await self.ledger.team_snapshots(team_id)
        return QuotaValues(held.vcpus, held.memory_mb, held.disk_gb, snapshots)

    async def report(self, team_id: str) -> QuotaReport:
        """Limits and current usage."""
        return QuotaReport(await self.limits(team_id), await self.usage(team_id))

    async def check_capsule(
        self, team_id: str, vcpus: int, memory_mb: int, disk_gb: int | None
    ) -> None:
        """Refuse a new capsule of this size when it would pass a limit (QuotaExceeded).

        Holds the team in the ledger until the transaction ends: insert the capsule row and
        commit before asking any agent, so no other create of the team checks in between.
        """
        await self._check(team_id, QuotaValues(vcpus, memory_mb, disk_gb or 0, 0))

    async def check_snapshot(self, team_id: str) -> None:
        """Refuse one more snapshot when the team keeps as many as it may (holds, as above)."""
        await self._check(team_id, QuotaValues(snapshot_count=1))

    async def _check(self, team_id: str, requested: QuotaValues) -> None:
        # The hold first: usage read before it could miss a racing create's row.
        await self.ledger.hold_team(team_id)
        reason = excess(await self.limits(team_id), await self.usage(team_id), requested)
        if reason is not None:
            raise QuotaExceeded(reason)

    async def require_team(self, team_id: str) -> None:
        """NotFound unless the team exists (for admin tools given a raw id)."""
        team = await self.session.get(Team, team_id)
        if team is None or team.deleted_at is not None:
            raise NotFound(f"team {team_id} not found")

    async def set_limits(
        self,
        team_id: str,
        *,
        vcpu: int | None = None,
        memory_mib: int | None = None,
        disk_gib: int | None = None,
        snapshot_count: int | None = None,
    ) -> QuotaValues:
        """Give a team its own limits (the ones passed); returns the limits now in force."""
        await self.require_team(team_id)
        given = {
            "vcpu": vcpu,
            "memory_mib": memory_mib,
            "disk_gib": disk_gib,
            "snapshot_count": snapshot_count,
        }
        if any(v is not None and v < 0 for v in given.values()):
            raise InvalidInput("quota limits must not be negative")
        row = await self.repo.get_or_add(team_id)
        for field, value in given.items():
            if value is not None:
                setattr(row, field, value)
        await self.session.flush()
        return await self.limits(team_id)
