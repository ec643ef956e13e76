"""Queries of the capsules feature."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, CursorResult, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.lifecycle import moving, predecessors
from hangar.core.capsules.models import (
    LIVE_STATUSES,
    Capsule,
    CapsuleStatus,
    MetricSample,
    Template,
    UsageSample,
)
from hangar.core.clock import utcnow
from hangar.core.pagination import Page, PageRequest, fetch


def _moved(result: object) -> bool:
    assert isinstance(result, CursorResult)
    return int(result.rowcount) == 1


class CapsuleRepository:
    """Reads and writes capsule rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_live(self, team_id: str, capsule_id: str) -> Capsule | None:
        """A team's capsule that has not been destroyed."""
        return (
            await self.session.execute(
                select(Capsule).where(
                    Capsule.id == capsule_id,
                    Capsule.team_id == team_id,
                    Capsule.status != CapsuleStatus.STOPPED,
                )
            )
        ).scalar_one_or_none()

    async def get_owned(self, team_id: str, capsule_id: str) -> Capsule | None:
        """A team's capsule, destroyed or not."""
        capsule = await self.get_any(capsule_id)
        return capsule if capsule is not None and capsule.team_id == team_id else None

    async def get_any(self, capsule_id: str | None) -> Capsule | None:
        """A capsule by id, destroyed or not (for provenance)."""
        return await self.session.get(Capsule, capsule_id) if capsule_id else None

    async def list_live(self, team_id: str) -> Sequence[Capsule]:
        """A team's capsules that have not been destroyed, newest first."""
        return (await self.page_live(team_id, PageRequest())).items

    async def page_live(self, team_id: str, page: PageRequest) -> Page[Capsule]:
        """One page of `list_live` (the id breaks ties, so pages neither skip nor repeat)."""
        query = (
            select(Capsule)
            .where(Capsule.team_id == team_id, Capsule.status != CapsuleStatus.STOPPED)
            .order_by(Capsule.created_at.desc(), Capsule.id.desc())
        )
        return await fetch(self.session, query, page)

    async def count_by_status(self) -> dict[str, int]:
        """How many capsules are in each status (every team's; for the metrics scrape)."""
        stmt = select(Capsule.status, func.count()).group_by(Capsule.status)
        rows = (await self.session.execute(stmt)).all()
        return {status: int(count) for status, count in rows}

    async def all_live(self) -> Sequence[Capsule]:
        """Every capsule not destroyed (for reconcilers)."""
        result = await self.session.execute(
            select(Capsule).where(Capsule.status.in_(list(LIVE_STATUSES)))
        )
        return result.scalars().all()

    async def pending(self) -> Sequence[Capsule]:
        """Capsules queued for a host, oldest first (for the provisioner)."""
        result = await self.session.execute(
            select(Capsule)
            .where(Capsule.status == CapsuleStatus.PENDING)
            .order_by(Capsule.created_at)
        )
        return result.scalars().all()

    async def snapshot_users(self, team_id: str, snapshot_id: str, name: str) -> list[str]:
        """Ids of a team's live capsules whose filesystem sits on a snapshot."""
        result = await self.session.execute(
            select(Capsule.id).where(
                Capsule.team_id == team_id,
                Capsule.status != CapsuleStatus.STOPPED,
                # Rows from before source_snapshot_id existed only name their template.
                (Capsule.source_snapshot_id == snapshot_id)
                | ((Capsule.source_snapshot_id.is_(None)) & (Capsule.template == name)),
            )
        )
        return list(result.scalars().all())

    async def team_reservations(self) -> list[tuple[str, int, int, int]]:
        """(team_id, running, vcpus, memory_mb) of every team with running capsules."""
        result = await self.session.execute(
            select(
                Capsule.team_id,
                func.count(),
                func.sum(Capsule.vcpus),
                func.sum(Capsule.memory_mb),
            )
            .where(Capsule.status == CapsuleStatus.RUNNING)
            .group_by(Capsule.team_id)
        )
        return [(t, int(n), int(v or 0), int(m or 0)) for t, n, v, m in result.all()]

    async def usage_samples(self, team_id: str, since: datetime) -> Sequence[UsageSample]:
        """A team's usage samples from `since`, oldest first."""
        result = await self.session.execute(
            select(UsageSample)
            .where(UsageSample.team_id == team_id, UsageSample.sampled_at >= since)
            .order_by(UsageSample.sampled_at)
        )
        return result.scalars().all()

    async def metric_samples(
        self, capsule_id: str, tier: str, since: int
    ) -> Sequence[MetricSample]:
        """Persisted metric points of a capsule."""
        result = await self.session.execute(
            select(MetricSample)
            .where(
                MetricSample.capsule_id == capsule_id,
                MetricSample.tier == tier,
                MetricSample.timestamp_unix >= since,
            )
            .order_by(MetricSample.timestamp_unix)
        )
        return result.scalars().all()

    async def replace_metric_samples(self, capsule_id: str, rows: list[MetricSample]) -> None:
        """Swap a capsule's persisted metrics for a fresh copy of the agent's rings."""
        await self.session.execute(
            delete(MetricSample).where(MetricSample.capsule_id == capsule_id)
        )
        self.session.add_all(rows)

    # The named moves: each changes a row only while it is still in the status it moves from,
    # so of writers racing for it (replicas, a destroy, its host going down) one wins.

    async def claim(self, capsule_id: str, host_id: str, host_ip: str) -> bool:
        """A provisioner's claim, pending -> starting on a host; False if no longer pending."""
        result = await self.session.execute(
            update(Capsule)
            .where(
                Capsule.id == capsule_id,
                moving(predecessors(CapsuleStatus.STARTING), CapsuleStatus.STARTING),
            )
            .values(
                status=CapsuleStatus.STARTING,
                status_reason="starting",
                host_id=host_id,
                host_ip=host_ip,
                claimed_at=utcnow(),
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return _moved(result)

    async def requeue(self, capsule_id: str, reason: str, *conditions: ColumnElement[bool]) -> bool:
        """Starting -> pending without a host (its claim undone); False if it was not.

        `conditions` narrow it further (the claim's host, its age).
        """
        result = await self.session.execute(
            update(Capsule)
            .where(
                Capsule.id == capsule_id,
                moving(predecessors(CapsuleStatus.PENDING), CapsuleStatus.PENDING),
                *conditions,
            )
            .values(
                status=CapsuleStatus.PENDING,
                status_reason=reason,
                host_id="",
                host_ip="",
                claimed_at=None,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return _moved(result)

    async def give_up_queued(self, capsule_id: str, reason: str) -> None:
        """Pending -> error: a queued capsule that can never start."""
        await self.session.execute(
            update(Capsule)
            .where(Capsule.id == capsule_id, moving([CapsuleStatus.PENDING], CapsuleStatus.ERROR))
            .values(status=CapsuleStatus.ERROR, status_reason=reason)
            .execution_options(synchronize_session=False)
        )


class TemplateRepository:
    """Reads and writes snapshot template rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, team_id: str, name: str) -> Template | None:
        """A team's snapshot template by name."""
        return (
            await self.session.execute(
                select(Template).where(Template.team_id == team_id, Template.name == name)
            )
        ).scalar_one_or_none()

    async def get_by_id(self, team_id: str, template_id: str) -> Template | None:
        """A team's snapshot template by id."""
        return (
            await self.session.execute(
                select(Template).where(Template.team_id == team_id, Template.id == template_id)
            )
        ).scalar_one_or_none()

    async def list_for_team(self, team_id: str) -> Sequence[Template]:
        """A team's snapshot templates, newest first."""
        result = await self.session.execute(
            select(Template).where(Template.team_id == team_id).order_by(Template.created_at.desc())
        )
        return result.scalars().all()
