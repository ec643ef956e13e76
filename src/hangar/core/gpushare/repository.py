"""Queries of the GPU sharing feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.gpushare.models import AgentGpu, AgentStatus, GpuAgent, GpuWorker, ShareLink


class GpuShareRepository:
    """Reads and writes agents, their GPUs, workers and share links."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: GpuAgent | AgentGpu | GpuWorker | ShareLink) -> None:
        """Store a new row."""
        self.session.add(row)
        await self.session.flush()

    async def agent(self, agent_id: str) -> GpuAgent | None:
        """An agent by id, read afresh."""
        return await self.session.get(GpuAgent, agent_id, populate_existing=True)

    async def agent_by_secret(self, secret_hash: str) -> GpuAgent | None:
        """The agent whose secret hashes to this."""
        return (
            await self.session.execute(select(GpuAgent).where(GpuAgent.secret_hash == secret_hash))
        ).scalar_one_or_none()

    async def agents(self, team_id: str) -> list[GpuAgent]:
        """A team's agents, oldest first."""
        rows = await self.session.execute(
            select(GpuAgent).where(GpuAgent.team_id == team_id).order_by(GpuAgent.created_at)
        )
        return list(rows.scalars().all())

    async def delete_agent(self, agent: GpuAgent) -> None:
        """Delete an agent; its GPUs, workers and shares go with it (foreign keys cascade)."""
        await self.session.delete(agent)
        await self.session.flush()

    async def gpus(self, agent_id: str) -> list[AgentGpu]:
        """An agent's GPUs by id."""
        rows = await self.session.execute(
            select(AgentGpu).where(AgentGpu.agent_id == agent_id).order_by(AgentGpu.gpu_id)
        )
        return list(rows.scalars().all())

    async def bump_config(self, agent_id: str) -> None:
        """One more config version; an increment in SQL, so concurrent changes all count."""
        await self.session.execute(
            update(GpuAgent)
            .where(GpuAgent.id == agent_id)
            .values(config_version=GpuAgent.config_version + 1)
            .execution_options(synchronize_session=False)
        )

    async def mark_offline(self, cutoff: datetime) -> int:
        """Agents silent since `cutoff` become offline; how many."""
        result = await self.session.execute(
            update(GpuAgent)
            .where(
                GpuAgent.status == AgentStatus.ONLINE,
                or_(GpuAgent.last_seen_at.is_(None), GpuAgent.last_seen_at < cutoff),
            )
            .values(status=AgentStatus.OFFLINE)
            .returning(GpuAgent.id)
            .execution_options(synchronize_session=False)
        )
        return len(result.all())

    async def worker(self, worker_id: str) -> GpuWorker | None:
        """A worker by id, read afresh."""
        return await self.session.get(GpuWorker, worker_id, populate_existing=True)

    async def workers(self, agent_id: str) -> list[GpuWorker]:
        """An agent's workers, oldest first."""
        rows = await self.session.execute(
            select(GpuWorker).where(GpuWorker.agent_id == agent_id).order_by(GpuWorker.created_at)
        )
        return list(rows.scalars().all())

    async def share(self, share_id: str) -> ShareLink | None:
        """A share link by id."""
        return await self.session.get(ShareLink, share_id, populate_existing=True)

    async def share_by_code(self, short_code: str) -> ShareLink | None:
        """A share link by its short code, read afresh."""
        return (
            await self.session.execute(
                select(ShareLink)
                .where(ShareLink.short_code == short_code)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()

    async def shares(self, team_id: str) -> list[ShareLink]:
        """A team's share links, newest first."""
        rows = await self.session.execute(
            select(ShareLink)
            .where(ShareLink.team_id == team_id)
            .order_by(ShareLink.created_at.desc(), ShareLink.id)
        )
        return list(rows.scalars().all())

    async def open_share(self, short_code: str, now: datetime) -> ShareLink | None:
        """Count one use of a live link; the link, or None when unknown, used up or expired.

        One conditional UPDATE: the count is raised by the database only while it is below
        `max_uses` and the link unexpired, so N concurrent opens of a link with M uses left
        give exactly M successes (PostgreSQL re-checks the row after the lock; SQLite
        serialises writers) — never a read-then-write that two openers could both pass.
        """
        return (
            await self.session.scalars(
                update(ShareLink)
                .where(
                    ShareLink.short_code == short_code,
                    or_(ShareLink.max_uses.is_(None), ShareLink.used_count < ShareLink.max_uses),
                    or_(ShareLink.expires_at.is_(None), ShareLink.expires_at > now),
                )
                .values(used_count=ShareLink.used_count + 1)
                .returning(ShareLink)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        ).one_or_none()
