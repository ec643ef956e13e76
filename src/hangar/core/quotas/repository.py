"""Queries of the quotas feature."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.quotas.models import TeamQuota


class QuotaRepository:
    """Reads and writes team quota rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, team_id: str) -> TeamQuota | None:
        """A team's own limits, if an admin set any."""
        return (
            await self.session.execute(select(TeamQuota).where(TeamQuota.team_id == team_id))
        ).scalar_one_or_none()

    async def get_or_add(self, team_id: str) -> TeamQuota:
        """A team's quota row, created empty (all defaults) when missing."""
        row = await self.get(team_id)
        if row is None:
            row = TeamQuota(team_id=team_id)
            self.session.add(row)
            await self.session.flush()
        return row
