"""Core services against a real database (SQLite and PostgreSQL) and a real agent process API.

The agent runs in this test process, served by uvicorn on a Unix socket, with the fake runtime
(directories and host subprocesses): the control plane talks the real agent protocol to it,
and tests can look at what the runtime was asked to do.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from hangar.core.capsules.models import Capsule, SnapshotStatus, Template
from hangar.core.capsules.provisioner import Provisioner
from hangar.core.capsules.service import CapsuleService
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.fleet.static import connect_static_agents
from hangar.core.identity.models import Team
from hangar.core.snapshots.service import SnapshotService
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


async def provision(provisioner: Provisioner) -> None:
    """One provisioner pass: start what is queued, and wait until those starts are done."""
    await provisioner.tick()
    await provisioner.drain()


@contextlib.contextmanager
def host_left_out(fleet: Fleet) -> Iterator[AgentHandle]:
    """The fleet's only host, out of it for the block: what is created meanwhile is queued."""
    [handle] = fleet.hosts()
    fleet.remove(handle.host_id)
    try:
        yield handle
    finally:
        fleet.add(handle)


async def queued_from_missing_snapshot(core: Services, fleet: Fleet, team_id: str) -> Capsule:
    """A VM queued from a ready snapshot whose files the host does not have: every start fails."""
    [handle] = fleet.hosts()
    broken = Template(
        team_id=team_id,
        name="broken",
        host_template=f"snap-missing-{team_id}",
        host_id=handle.host_id,
        vcpus=1,
        memory_mb=256,
        status=SnapshotStatus.READY,
    )
    core.session.add(broken)
    await core.session.commit()
    with host_left_out(fleet):
        vm = await core.capsules.create_from_snapshot(team_id, broken.id, queue=True)
        await core.session.commit()
    return vm
