"""Core services against a real database (SQLite and PostgreSQL) and a real agent process API.

The agent runs in this test process, served by uvicorn on a Unix socket, with the fake runtime
(directories and host subprocesses): the control plane talks the real agent protocol to it,
and tests can look at what the runtime was asked to do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agent.api import build_agent_app
from hangar.agent.runtimes.fake import FakeRuntime
from hangar.agent.service import Agent
from hangar.agent.templates_dir import DirTemplates
from hangar.core.capsules.service import CapsuleService
from hangar.core.capsules.snapshots import SnapshotService
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.fleet.gateway import Fleet
from hangar.core.hosts.static import connect_static_agents
from hangar.core.identity.models import Team
from support.live import fresh_postgres_database


@dataclass
class FakeHost:
    """The in-process agent and its fake runtime."""

    runtime: FakeRuntime
    agent: Agent
    address: str


@pytest.fixture(scope="session")
def core_db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('core-db') / 'hangar.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture(scope="session")
async def core_db(core_db_url: str) -> AsyncIterator[Database]:
    db = Database(core_db_url)
    await upgrade(db)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def fake_host(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FakeHost]:
    root: Path = tmp_path_factory.mktemp(f"core-agent-{backend}")
    runtime = FakeRuntime(root / "boxes")
    runtime.root.mkdir()
    agent = Agent(runtime, DirTemplates(root / "templates"), root / "state")
    socket = root / "agent.sock"
    app = build_agent_app(agent)
    config = uvicorn.Config(app, uds=str(socket), log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    await agent.start()
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "the in-process agent did not start"
    try:
        yield FakeHost(runtime, agent, f"unix:{socket}")
    finally:
        server.should_exit = True
        await task
        await agent.stop()


@pytest.fixture(scope="session")
async def fleet(core_db: Database, fake_host: FakeHost) -> AsyncIterator[Fleet]:
    fleet = Fleet()
    await connect_static_agents(core_db, fleet, {"local": fake_host.address}, None)
    yield fleet
    await fleet.aclose()


@pytest.fixture
def settings() -> CapsuleSettings:
    return CapsuleSettings()


@pytest.fixture
async def team_id(core_db: Database) -> str:
    """A new team of its own, so tests never see each other's capsules or quotas."""
    async with core_db.session() as session:
        team = Team(name="Core test", slug=f"t-{uuid.uuid4().hex[:20]}")
        session.add(team)
        await session.commit()
        return team.id


@dataclass
class Services:
    """One session's services; the test commits, as a route would."""

    session: AsyncSession
    capsules: CapsuleService
    snapshots: SnapshotService


@pytest.fixture
async def core(
    core_db: Database, fleet: Fleet, settings: CapsuleSettings
) -> AsyncIterator[Services]:
    async with core_db.session() as session:
        capsules = CapsuleService(session, fleet, settings)
        yield Services(session, capsules, SnapshotService(session, fleet, capsules))
