"""Queries of the hosts feature."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.db.upsert import insert_for
from hangar.core.hosts.models import (
    Host,
    HostStatus,
    HostTag,
    HostToken,
    HostTokenKind,
    HostType,
    TeamPlacement,
)

REACHABLE = [HostStatus.ONLINE, HostStatus.DRAINING]


class HostRepository:
    """Reads and writes host, host token and tag rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, host_id: str) -> Host | None:
        """A host by id."""
        if not host_id:
            return None
        return await self.session.get(Host, host_id)

    async def list_hosts(
        self, team_id: str | None = None, *, byoc_only: bool = False
    ) -> Sequence[Host]:
        """Hosts, newest first: all of them, or one team's BYOC hosts."""
        stmt = select(Host).order_by(Host.created_at.desc(), Host.id)
        if byoc_only:
            stmt = stmt.where(Host.type == "byoc", Host.team_id == team_id)
        return (await self.session.execute(stmt)).scalars().all()

    async def count_by_status(self) -> dict[str, int]:
        """How many hosts are in each status (for the metrics scrape)."""
        stmt = select(Host.status, func.count()).group_by(Host.status)
        rows = (await self.session.execute(stmt)).all()
        return {status: int(count) for status, count in rows}

    async def add(self, host: Host) -> Host:
        """Insert a host."""
        self.session.add(host)
        await self.session.flush()
        return host

    async def delete(self, host: Host) -> None:
        """Remove a host; its tokens and tags go with it."""
        await self.session.execute(delete(HostToken).where(HostToken.host_id == host.id))
        await self.session.execute(delete(HostTag).where(HostTag.host_id == host.id))
        await self.session.delete(host)
        await self.session.flush()

    async def add_token(self, token: HostToken) -> None:
        """Store a token's hash."""
        self.session.add(token)
        await self.session.flush()

    async def consume_token(
        self, kind: HostTokenKind, token_hash: str, now: datetime
    ) -> str | None:
        """Mark an unused, unexpired token used and return its host id; None if none matched.

        One conditional UPDATE, so of two concurrent attempts exactly one sees a row change:
        the loser's UPDATE waits for the winner's commit and then matches nothing.
        """
        result = await self.session.execute(
            update(HostToken)
            .where(
                HostToken.token_hash == token_hash,
                HostToken.kind == kind,
                HostToken.used_at.is_(None),
                HostToken.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:
            return None
        return await self.session.scalar(
            select(HostToken.host_id).where(HostToken.token_hash == token_hash)
        )

    async def retire_tokens(self, host_id: str, kind: HostTokenKind, now: datetime) -> None:
        """Mark every still-usable token of a kind used (a regenerated one replaces them)."""
        await self.session.execute(
            update(HostToken)
            .where(
                HostToken.host_id == host_id, HostToken.kind == kind, HostToken.used_at.is_(None)
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )

    async def tags(self, host_id: str) -> list[str]:
        """A host's tags, sorted."""
        result = await self.session.execute(
            select(HostTag.tag).where(HostTag.host_id == host_id).order_by(HostTag.tag)
        )
        return list(result.scalars().all())

    async def add_tag(self, host_id: str, tag: str) -> None:
        """Tag a host (idempotent, also when two requests add the same tag at once)."""
        await self.session.execute(
            insert_for(self.session, HostTag)
            .values(host_id=host_id, tag=tag)
            .on_conflict_do_nothing()
        )

    async def remove_tag(self, host_id: str, tag: str) -> None:
        """Untag a host (idempotent)."""
        await self.session.execute(
            delete(HostTag).where(HostTag.host_id == host_id, HostTag.tag == tag)
        )

    async def live_capsules(self, host_id: str) -> Sequence[Capsule]:
        """Capsules on a host that have not been destroyed, oldest first."""
        result = await self.session.execute(
            select(Capsule)
            .where(Capsule.host_id == host_id, Capsule.status != CapsuleStatus.STOPPED)
            .order_by(Capsule.created_at, Capsule.id)
        )
        return result.scalars().all()

    async def silent_since(self, cutoff: datetime) -> Sequence[Host]:
        """Online or draining hosts whose last heartbeat is older than `cutoff`."""
        result = await self.session.execute(
            select(Host).where(
                Host.status.in_(REACHABLE),
                (Host.last_heartbeat_at < cutoff) | Host.last_heartbeat_at.is_(None),
            )
        )
        return result.scalars().all()

    async def placeable(self, team_id: str) -> Sequence[Host]:
        """Online hosts a team's capsule may go to: regular ones and the team's BYOC ones."""
        result = await self.session.execute(
            select(Host)
            .where(
                Host.status == HostStatus.ONLINE,
                (Host.type == HostType.REGULAR)
                | ((Host.type == HostType.BYOC) & (Host.team_id == team_id)),
            )
            .order_by(Host.id)
        )
        return result.scalars().all()

    async def byoc_only(self, team_id: str) -> bool:
        """Whether a team is pinned to its own BYOC hosts."""
        pinned = await self.session.scalar(
            select(TeamPlacement.byoc_only).where(TeamPlacement.team_id == team_id)
        )
        return bool(pinned)

    async def set_byoc_only(self, team_id: str, byoc_only: bool) -> None:
        """Pin a team to its BYOC hosts, or unpin it."""
        row = await self.session.get(TeamPlacement, team_id)
        if row is None:
            self.session.add(TeamPlacement(team_id=team_id, byoc_only=byoc_only))
        else:
            row.byoc_only = byoc_only
        await self.session.flush()
