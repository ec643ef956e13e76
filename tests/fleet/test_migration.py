"""Migration 0007: rows that named a configured agent now name its host row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.fleet.static import static_host_id
from support.live import fresh_postgres_database


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "postgres":
        with fresh_postgres_database() as made:
            yield made
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"


async def test_static_agent_names_become_host_ids(url: str) -> None:
    db = Database(url)
    registered = str(uuid.uuid4())
    try:
        await upgrade(db, "0005")
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO teams (id, name, slug, created_at) "
                    "VALUES ('t1', 'T', 't', CURRENT_TIMESTAMP)"
                )
            )
            for capsule_id, host in [("c1", "local"), ("c2", registered), ("c3", "edge-1")]:
                await conn.execute(
                    text(
                        "INSERT INTO capsules (id, team_id, host_id, template, vcpus, memory_mb, "
                        "timeout_sec, status, guest_ip, host_ip, updated_at, created_at) VALUES "
                        "(:id, 't1', :host, 'minimal', 1, 256, 0, 'running', '', '', "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"id": capsule_id, "host": host},
                )
            await conn.execute(
                text(
                    "INSERT INTO templates (id, team_id, name, host_template, host_id, "
                    "size_bytes, created_at) VALUES ('s1', 't1', 'snap', 'snap-1', 'local', 0, "
                    "CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(db)
        async with db.engine.connect() as conn:
            capsules = dict((await conn.execute(text("SELECT id, host_id FROM capsules"))).all())
            template = (await conn.execute(text("SELECT host_id FROM templates"))).scalar_one()
            hosts = (await conn.execute(text("SELECT COUNT(*) FROM hosts"))).scalar_one()
    finally:
        await db.dispose()
    assert capsules == {
        "c1": static_host_id("local"),
        "c2": registered,  # already a host id: left alone
        "c3": static_host_id("edge-1"),
    }
    assert template == static_host_id("local")
    assert hosts == 0  # host rows are made at start, with the agent's specs
