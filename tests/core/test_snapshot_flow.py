"""The one two-phase snapshot flow both faces take: recorded and committed, then the host."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from hangar.agentproto.client import AgentError
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.errors import UpstreamError
from hangar.core.fleet.gateway import Fleet
from hangar.core.quotas.service import QuotaService
from hangar.core.snapshots.modes import SNAPSHOT, TEMPLATE, Mode

from .conftest import Services

MODES = pytest.mark.parametrize("mode", [TEMPLATE, SNAPSHOT], ids=["template", "snapshot"])


async def _running(core: Services, team_id: str) -> Capsule:
    capsule = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    await core.session.commit()
    return capsule


async def _rows(db: Database, team_id: str) -> list[tuple[str, SnapshotStatus]]:
    """The team's snapshot rows as another session sees them: what is committed."""
    async with db.session() as session:
        result = await session.execute(
            select(Template.name, Template.status).where(Template.team_id == team_id)
        )
        return [(name, status) for name, status in result.all()]


@MODES
async def test_a_snapshot_is_committed_as_creating_before_its_host_is_asked(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    mode: Mode,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capsule = await _running(core, team_id)
    client = fleet.agent(capsule.host_id)
    real: Callable[..., Awaitable[Any]] = client.snapshot
    seen: list[list[tuple[str, SnapshotStatus]]] = []

    async def snapshot(*args: Any, **kwargs: Any) -> Any:
        seen.append(await _rows(core_db, team_id))
        return await real(*args, **kwargs)

    monkeypatch.setattr(client, "snapshot", snapshot)
    made = await core.snapshots.take(team_id, capsule.id, "kept", mode=mode)
    await core.session.commit()
    assert seen == [[("kept", SnapshotStatus.CREATING)]]
    assert made.status == SnapshotStatus.READY
    assert await _rows(core_db, team_id) == [("kept", SnapshotStatus.READY)]
    # Saving as a template consumes the capsule; a snapshot leaves it running.
    await core.session.refresh(capsule)
    assert mode.consumes_source == (capsule.status == CapsuleStatus.STOPPED)
    if not mode.consumes_source:
        await core.capsules.destroy(team_id, capsule.id)
    await core.snapshots.delete(team_id, "kept")
    await core.session.commit()


@MODES
async def test_a_host_failure_releases_the_snapshot_slot(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    mode: Mode,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quotas = QuotaService(core.session, settings.quotas)
    await quotas.set_limits(team_id, snapshot_count=1)
    await core.session.commit()
    capsule = await _running(core, team_id)

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AgentError("internal", "disk full", 500)

    monkeypatch.setattr(fleet.agent(capsule.host_id), "snapshot", refuse)
    if mode.keeps_failures:
        failed = await core.snapshots.take(team_id, capsule.id, "broken", mode=mode)
        await core.session.commit()
        assert (failed.status, failed.status_reason) == (SnapshotStatus.ERROR, "disk full")
        assert await _rows(core_db, team_id) == [("broken", SnapshotStatus.ERROR)]
    else:
        with pytest.raises(UpstreamError, match="disk full"):
            await core.snapshots.take(team_id, capsule.id, "broken", mode=mode)
        await core.session.rollback()  # as a failed request's unit of work does
        assert await _rows(core_db, team_id) == []
    # The slot is free again and the capsule untouched: the next snapshot fits the quota.
    assert (await quotas.usage(team_id)).snapshot_count == 0
    await core.session.refresh(capsule)
    assert capsule.status == CapsuleStatus.RUNNING
    monkeypatch.undo()
    again = await core.snapshots.take(team_id, capsule.id, "again", mode=mode)
    await core.session.commit()
    assert again.status == SnapshotStatus.READY
    if not mode.consumes_source:
        await core.capsules.destroy(team_id, capsule.id)
    for template in await core.snapshots.list_snapshots(team_id):
        await core.snapshots.delete_snapshot(team_id, template.id)
    await core.session.commit()
