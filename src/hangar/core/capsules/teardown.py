"""Destroying every capsule of a deleted team.

Deleting a team destroys its capsules at once (`destroy_team_capsules`, right after the
deletion commits). A create that passed authentication just before the deletion can still
commit a capsule after that sweep, and a host can fail to destroy one; the reconciler's
`sweep_deleted_teams` catches both on its next tick, so nothing of a deleted team keeps running.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.models import LIVE_STATUSES, Capsule, CapsuleStatus
from hangar.core.capsules.service import CapsuleService
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.errors import DomainError
from hangar.core.fleet.gateway import Fleet
from hangar.core.identity.models import Team

log = structlog.get_logger("hangar.capsules.teardown")


async def destroy_team_capsules(capsules: CapsuleService, team_id: str) -> int:
    """Destroy each live capsule of a team, committing one by one; how many were left.

    Call with nothing uncommitted: each destroy calls the capsule's host first, and no
    write may be pending (SQLite's write lock) while it does. One a host fails to destroy is
    left live for the reconciler's sweep.
    """
    session = capsules.session
    left = 0
    for capsule in await capsules.list_for_team(team_id):
        # Fresh from the database: a provisioner may have claimed it since the list was read.
        await session.refresh(capsule)
        if capsule.status == CapsuleStatus.STOPPED:
            continue
        try:
            await capsules.destroy_row(capsule)
            await checkpoint(session)
        except DomainError as exc:
            await session.rollback()
            left += 1
            log.warning(
                "team.capsule_destroy_failed",
                team_id=team_id,
                capsule_id=capsule.id,
                error=exc.message,
            )
    return left


async def teams_with_capsules_to_destroy(session: AsyncSession) -> list[str]:
    """Deleted teams that still have live capsules."""
    stmt = (
        select(Capsule.team_id)
        .join(Team, Team.id == Capsule.team_id)
        .where(Team.deleted_at.is_not(None), Capsule.status.in_(list(LIVE_STATUSES)))
        .distinct()
    )
    return list((await session.execute(stmt)).scalars().all())


async def sweep_deleted_teams(db: Database, fleet: Fleet, settings: CapsuleSettings) -> None:
    """Destroy what deleted teams still have live (the reconciler runs this every tick)."""
    async with db.session() as session:
        team_ids = await teams_with_capsules_to_destroy(session)
        await checkpoint(session)  # end the read: each destroy calls a host outside a transaction
        for team_id in team_ids:
            left = await destroy_team_capsules(CapsuleService(session, fleet, settings), team_id)
            log.info("team.capsules_swept", team_id=team_id, left=left)
