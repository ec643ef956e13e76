"""No database write lock is held while an agent is asked something (SQLite has one writer).

On SQLite a flush, or even an UPDATE matching no row, takes the single write lock until the
transaction ends; held across an agent call, every other writer waits and then fails with
"database is locked". Each test probes the lock from another connection during the call.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from hangar.agent.runtimes.base import SandboxInfo, SandboxSpec
from hangar.agentproto.client import AgentClient
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.provisioner import STALE_SNAPSHOT, Provisioner
from hangar.core.capsules.reconciler import CapsuleReconciler
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.capsules.service import CapsuleService
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings, HostSettings
from hangar.core.db import Database
from hangar.core.fleet.gateway import Fleet
from hangar.core.fleet.static import connect_static_agents, static_host_id
from hangar.core.hosts.service import HostService
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.quotas.service import QuotaService
from hangar.core.security.jwt import TokenSigner, generate_key
from hangar.core.snapshots.modes import TEMPLATE

from .conftest import FakeHost, Services, host_left_out

sqlite_only = pytest.mark.usefixtures("sqlite_backend")


@pytest.fixture
def sqlite_backend(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the single write lock is SQLite's")


def write_lock_free(db: Database) -> bool:
    """Whether another connection could start writing now (it fails at once if not)."""
    assert db.url.database is not None
    conn = sqlite3.connect(db.url.database, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return False
    finally:
        conn.close()


def probe(
    monkeypatch: pytest.MonkeyPatch, client: AgentClient, method: str, db: Database
) -> list[bool]:
    """Record, at each call of the agent client's `method`, whether the write lock was free."""
    seen: list[bool] = []
    real: Callable[..., Awaitable[Any]] = getattr(client, method)

    async def probing(*args: Any, **kwargs: Any) -> Any:
        seen.append(write_lock_free(db))
        return await real(*args, **kwargs)

    monkeypatch.setattr(client, method, probing)
    return seen


async def _running(core: Services, team_id: str) -> Capsule:
    capsule = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    await core.session.commit()
    return capsule


@sqlite_only
async def test_open_stream_touches_after_the_agent_answers(
    core: Services, core_db: Database, fleet: Fleet, team_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    capsule = await _running(core, team_id)
    before = capsule.last_active_at
    seen = probe(monkeypatch, fleet.agent(capsule.host_id), "stream", core_db)
    stream = await core.capsules.open_stream(team_id, capsule.id, "pty")
    await stream.close()
    await core.session.commit()
    assert seen == [True]
    assert capsule.last_active_at is not None
    assert before is not None
    assert capsule.last_active_at >= before  # still touched, after the call
    await core.capsules.destroy(team_id, capsule.id)
    await core.session.commit()


@sqlite_only
async def test_a_start_undone_after_a_destroy_holds_no_lock(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    fake_host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with host_left_out(fleet):
        vm = await core.capsules.create_vm(team_id, machine_type="c1m2", queue=True)
        await core.session.commit()
    real = fake_host.runtime.create

    async def destroyed_meanwhile(spec: SandboxSpec) -> SandboxInfo:
        # The user's destroy lands while the host starts it: the claim no longer stands.
        async with core_db.session() as other:
            await other.execute(
                update(Capsule)
                .where(Capsule.id == vm.id)
                .values(status=CapsuleStatus.STOPPED, destroyed_at=utcnow())
            )
            await other.commit()
        return await real(spec)

    monkeypatch.setattr(fake_host.runtime, "create", destroyed_meanwhile)
    seen = probe(monkeypatch, fleet.agent(fleet.hosts()[0].host_id), "destroy_sandbox", core_db)
    provisioner = Provisioner(core_db, fleet, settings)
    await provisioner.tick()
    await provisioner.drain()
    assert seen == [True]
    assert vm.id not in fake_host.runtime.specs  # the start was undone


@sqlite_only
async def test_a_create_commits_its_reservation_and_holds_no_lock_while_it_starts(
    core: Services, core_db: Database, fleet: Fleet, team_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fleet.agent(static_host_id("local"))
    real = client.create_sandbox
    seen: list[tuple[bool, list[str]]] = []

    async def probing(request: Any) -> Any:
        # Another connection sees the reservation (the row, `starting`) before the host works.
        assert core_db.url.database is not None
        with sqlite3.connect(core_db.url.database) as other:
            rows = other.execute(
                "SELECT status FROM capsules WHERE id = ?", (request.sandbox_id,)
            ).fetchall()
        seen.append((write_lock_free(core_db), [r[0] for r in rows]))
        return await real(request)

    monkeypatch.setattr(client, "create_sandbox", probing)
    capsule = await _running(core, team_id)
    assert seen == [(True, [CapsuleStatus.STARTING])]
    assert capsule.status == CapsuleStatus.RUNNING
    await core.capsules.destroy(team_id, capsule.id)
    await core.session.commit()


@pytest.fixture
async def other_fleet(core_db: Database, fake_host: FakeHost) -> AsyncIterator[Fleet]:
    """A fleet of one host of its own (the same agent under another name), to delete."""
    fleet = Fleet()
    await connect_static_agents(
        core_db, fleet, {f"doomed-{uuid.uuid4().hex[:8]}": fake_host.address}, None
    )
    yield fleet
    await fleet.aclose()


@sqlite_only
async def test_a_forced_host_delete_asks_every_agent_before_writing(
    core_db: Database,
    other_fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    fake_host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [handle] = other_fleet.hosts()
    async with core_db.session() as session:
        capsules = CapsuleService(session, other_fleet, settings)
        made = [
            await capsules.create(
                team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
            )
            for _ in range(2)
        ]
        await session.commit()
        seen = probe(monkeypatch, handle.client, "destroy_sandbox", core_db)
        signer = TokenSigner([generate_key()], "test")
        hosts = HostService(session, signer, HostSettings(), capsules)
        admin = Principal(CredentialKind.USER_TOKEN, None, None, is_platform_admin=True)
        await hosts.delete(admin, handle.host_id, force=True)
        await session.commit()
        assert seen == [True, True]
        rows = (
            await session.scalars(select(Capsule).where(Capsule.id.in_([c.id for c in made])))
        ).all()
        assert {c.status for c in rows} == {CapsuleStatus.STOPPED}
    assert not {c.id for c in made} & set(fake_host.runtime.specs)


async def test_a_forced_delete_of_an_unreachable_host_records_its_capsules_destroyed(
    core_db: Database, other_fleet: Fleet, team_id: str, settings: CapsuleSettings
) -> None:
    [handle] = other_fleet.hosts()
    async with core_db.session() as session:
        capsules = CapsuleService(session, other_fleet, settings)
        made = [
            await capsules.create(
                team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
            )
            for _ in range(2)
        ]
        await session.commit()
        other_fleet.remove(handle.host_id)  # its agent can no longer be reached
        hosts = HostService(
            session, TokenSigner([generate_key()], "test"), HostSettings(), capsules
        )
        admin = Principal(CredentialKind.USER_TOKEN, None, None, is_platform_admin=True)
        await hosts.delete(admin, handle.host_id, force=True)
        await session.commit()
        rows = (
            await session.scalars(select(Capsule).where(Capsule.id.in_([c.id for c in made])))
        ).all()
        assert {(c.status, c.status_reason) for c in rows} == {
            (CapsuleStatus.STOPPED, "its host was deleted")
        }
    for capsule in made:  # what the unreachable host kept running
        await handle.client.destroy_sandbox(capsule.id)
    await handle.client.aclose()  # out of the fleet, so not closed with it


@sqlite_only
async def test_a_template_overwrite_asks_the_agent_before_writing(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    fake_host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await _running(core, team_id)
    old = await core.snapshots.take(team_id, first.id, "keeper", mode=TEMPLATE, overwrite=False)
    await core.session.commit()
    second = await _running(core, team_id)
    client = fleet.agent(second.host_id)
    destroys = probe(monkeypatch, client, "destroy_sandbox", core_db)
    deletes = probe(monkeypatch, client, "delete_template", core_db)
    new = await core.snapshots.take(team_id, second.id, "keeper", mode=TEMPLATE, overwrite=True)
    await core.session.commit()
    assert (destroys, deletes) == ([True], [True])
    assert new.host_template != old.host_template
    names = {t.name for t in fake_host.agent.templates.list()}
    assert new.host_template in names
    assert old.host_template not in names
    assert second.status == CapsuleStatus.STOPPED
    await core.snapshots.delete(team_id, "keeper")
    await core.session.commit()


async def test_a_host_sync_never_overwrites_a_destroy_committed_after_its_read(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capsule = await _running(core, team_id)
    polled_at = utcnow()
    real = CapsuleRepository.all_live

    async def then_destroyed(self: CapsuleRepository) -> Any:
        rows = await real(self)
        async with core_db.session() as other:  # a user's destroy, committed after the read
            await other.execute(
                update(Capsule)
                .where(Capsule.id == capsule.id)
                .values(status=CapsuleStatus.STOPPED, destroyed_at=utcnow())
            )
            await other.commit()
        return rows

    monkeypatch.setattr(CapsuleRepository, "all_live", then_destroyed)
    reconciler = CapsuleReconciler(core_db, fleet, settings)
    # The poll did not list it (it was being destroyed): the read still says running.
    await reconciler._sync_host(capsule.host_id, {}, polled_at)
    capsule_id = capsule.id
    core.session.expire_all()
    row = await core.session.get(Capsule, capsule_id)
    assert row is not None
    assert row.status == CapsuleStatus.STOPPED


async def test_a_stale_snapshot_loses_its_files_and_its_quota_slot(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    fake_host: FakeHost,
    other_fleet: Fleet,
) -> None:
    [handle] = fleet.hosts()
    templates = fake_host.agent.templates
    name = f"snap-stale-{uuid.uuid4().hex[:8]}"
    templates.snapshot_dest(name).mkdir()
    templates.register_snapshot(name)  # partial files of an interrupted snapshot
    old = utcnow() - STALE_SNAPSHOT - timedelta(minutes=1)
    stale = Template(
        team_id=team_id,
        name="interrupted",
        host_template=name,
        host_id=handle.host_id,
        vcpus=1,
        memory_mb=256,
        status=SnapshotStatus.CREATING,
        created_at=old,
    )
    elsewhere = Template(
        team_id=team_id,
        name="elsewhere",
        host_template=f"{name}-x",
        host_id=static_host_id(f"absent-{uuid.uuid4().hex[:8]}"),  # no such host any more
        vcpus=1,
        memory_mb=256,
        status=SnapshotStatus.CREATING,
        created_at=old,
    )
    later = Template(  # its host is another replica's (not connected here): left to that one
        team_id=team_id,
        name="later",
        host_template=f"{name}-y",
        host_id=other_fleet.hosts()[0].host_id,
        vcpus=1,
        memory_mb=256,
        status=SnapshotStatus.CREATING,
        created_at=old,
    )
    core.session.add_all([stale, elsewhere, later])
    await core.session.commit()
    quotas = QuotaService(core.session, settings.quotas)
    assert (await quotas.usage(team_id)).snapshot_count == 3
    provisioner = Provisioner(core_db, fleet, settings)
    await provisioner.tick()
    await provisioner.drain()
    core.session.expire_all()
    for template in (stale, elsewhere):
        await core.session.refresh(template)
        assert template.status == SnapshotStatus.ERROR
    await core.session.refresh(later)
    assert later.status == SnapshotStatus.CREATING
    assert name not in {t.name for t in templates.list()}
    assert (await quotas.usage(team_id)).snapshot_count == 1
    await core.session.delete(later)
    await core.session.commit()
