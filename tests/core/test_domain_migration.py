"""Migration 0011: console tokens move onto grants (and back), hosts get a region."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from hangar.core.db import Database
from hangar.core.db.migrate import alembic_config, upgrade
from support.live import fresh_postgres_database


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "postgres":
        with fresh_postgres_database() as made:
            yield made
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"


async def downgrade(db: Database, revision: str) -> None:
    def _run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_run)


async def test_console_tokens_become_grants_and_back(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db, "0010")
        async with db.engine.begin() as conn:
            for sql in (
                "INSERT INTO teams (id, name, slug, created_at) "
                "VALUES ('t1', 'T', 't', CURRENT_TIMESTAMP)",
                "INSERT INTO capsules (id, team_id, host_id, template, vcpus, memory_mb, "
                "timeout_sec, status, guest_ip, host_ip, updated_at, created_at) VALUES "
                "('c1', 't1', 'h', 'minimal', 1, 256, 0, 'running', '', '', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)",
                "INSERT INTO console_tokens (id, capsule_id, token_hash, expires_at, created_at) "
                "VALUES ('k1', 'c1', 'hash-1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                "INSERT INTO hosts (id, type, status, draining, created_at, updated_at) "
                "VALUES ('h1', 'regular', 'online', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            ):
                await conn.execute(text(sql))
        await upgrade(db)
        async with db.engine.connect() as conn:
            grants = (
                await conn.execute(text("SELECT id, purpose, subject_id, token_hash FROM grants"))
            ).all()
            region = (await conn.execute(text("SELECT region FROM hosts"))).scalar_one()
        assert [tuple(g) for g in grants] == [("k1", "console", "c1", "hash-1")]
        assert region == "local"

        await downgrade(db, "0010")
        async with db.engine.connect() as conn:
            tokens = (await conn.execute(text("SELECT id, capsule_id FROM console_tokens"))).all()
        assert [tuple(t) for t in tokens] == [("k1", "c1")]
        await upgrade(db)  # and up again, cleanly
    finally:
        await db.dispose()
