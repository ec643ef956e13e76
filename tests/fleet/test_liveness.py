"""Host transitions on a real database: capsules go missing with their host, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.events.models import OutboxEvent
from hangar.core.hosts.admin import set_draining
from hangar.core.hosts.liveness import mark_down, mark_up
from hangar.core.hosts.models import Host, HostStatus, HostType
from hangar.core.identity.models import Team
from support.live import fresh_postgres_database


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async def made(url: str) -> AsyncIterator[Database]:
        database = Database(url)
        await upgrade(database)
        try:
            yield database
        finally:
            await database.dispose()

    if backend == "postgres":
        with fresh_postgres_database() as url:
            async for database in made(url):
                yield database
    else:
        async for database in made(f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"):
            yield database


async def test_offline_host_takes_its_capsules_and_comes_back_draining(db: Database) -> None:
    async with db.session() as session:
        team = Team(name="T", slug="t-liveness")
        host = Host(type=HostType.REGULAR, status=HostStatus.ONLINE)
        session.add_all([team, host])
        await session.flush()
        statuses = [
            CapsuleStatus.RUNNING,
            CapsuleStatus.PAUSED,
            CapsuleStatus.STOPPED,
            CapsuleStatus.STARTING,  # claimed by a provisioner, whose start cannot finish now
        ]
        capsules = [
            Capsule(
                team_id=team.id,
                host_id=host.id,
                template="minimal",
                vcpus=1,
                memory_mb=256,
                timeout_sec=0,
                status=status,
            )
            for status in statuses
        ]
        session.add_all(capsules)
        await session.commit()
        host_id = host.id

    async with db.session() as session:
        host = await session.get_one(Host, host_id)
        missing = await mark_down(session, host, HostStatus.OFFLINE, "its agent said goodbye")
        assert missing is not None
        assert len(missing) == 2
        # A second observer of the same loss changes nothing and says nothing.
        assert await mark_down(session, host, HostStatus.UNREACHABLE, "again") is None
        await set_draining(session, host_id, True)
        assert host.status == HostStatus.OFFLINE  # draining is remembered, not shown, while away
        assert mark_up(session, host)
        assert host.status == HostStatus.DRAINING
        assert not mark_up(session, host)  # already up: only the heartbeat time moves
        await session.commit()

    async with db.session() as session:
        rows = {c.status: c for c in (await session.scalars(select(Capsule))).all()}
        assert set(rows) == {CapsuleStatus.MISSING, CapsuleStatus.STOPPED, CapsuleStatus.PENDING}
        requeued = rows[CapsuleStatus.PENDING]
        assert (requeued.host_id, requeued.claimed_at) == ("", None)
        assert (requeued.status_reason or "").startswith("waiting for a host")
        reason = rows[CapsuleStatus.MISSING].status_reason or ""
        assert "offline" in reason
        assert "goodbye" in reason
        events = (await session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))).all()
        assert [(e.type, e.payload["status"]) for e in events] == [
            ("host.down", "offline"),
            ("host.up", "draining"),
        ]
