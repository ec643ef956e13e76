"""Queued capsules started by several provisioners (replicas) sharing one database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from hangar.agent.runtimes.base import SandboxInfo, SandboxSpec
from hangar.agentproto.models import CreateSandbox, Sandbox
from hangar.core.capsules.launch import sandbox_request
from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.capsules.provisioner import Provisioner
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.events.models import OutboxEvent
from hangar.core.fleet.gateway import Fleet
from hangar.core.fleet.static import connect_static_agents

from .conftest import (
    FakeHost,
    Services,
    host_left_out,
    provision,
    queued_from_missing_snapshot,
)


@pytest.fixture
def creates(fake_host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times the host's agent was asked to create each sandbox."""
    seen: Counter[str] = Counter()
    real = fake_host.agent.create

    async def counting(request: CreateSandbox) -> Sandbox:
        seen[request.sandbox_id] += 1
        await asyncio.sleep(0.05)  # a start takes a while: the other replica gets its chance
        return await real(request)

    monkeypatch.setattr(fake_host.agent, "create", counting)
    return seen


@pytest.fixture
async def second_fleet(core_db: Database, fake_host: FakeHost) -> AsyncIterator[Fleet]:
    """Another replica's view of the same host (its own clients)."""
    fleet = Fleet()
    await connect_static_agents(core_db, fleet, {"local": fake_host.address}, None)
    yield fleet
    await fleet.aclose()


async def _queue(core: Services, fleet: Fleet, team_id: str, n: int) -> list[str]:
    """`n` pending VMs (queued while the host is out of this fleet)."""
    with host_left_out(fleet):
        vms = [
            await core.capsules.create_vm(team_id, machine_type="c1m2", queue=True)
            for _ in range(n)
        ]
        await core.session.commit()
    assert {vm.status for vm in vms} == {CapsuleStatus.PENDING}
    return [vm.id for vm in vms]


async def _rows(core: Services, ids: list[str]) -> dict[str, Capsule]:
    core.session.expire_all()
    rows = await core.session.scalars(select(Capsule).where(Capsule.id.in_(ids)))
    return {c.id: c for c in rows}


async def _destroy(core: Services, team_id: str, ids: list[str]) -> None:
    for capsule_id in ids:
        await core.capsules.destroy(team_id, capsule_id)
    await core.session.commit()


async def test_two_replicas_start_each_queued_capsule_exactly_once(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    second_fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    creates: Counter[str],
    fake_host: FakeHost,
) -> None:
    ids = await _queue(core, fleet, team_id, 6)
    one = Provisioner(core_db, fleet, settings)
    two = Provisioner(core_db, second_fleet, settings)
    for _ in range(3):  # both replicas see every capsule pending, and race for each
        await asyncio.gather(one.tick(), two.tick())
        await asyncio.gather(one.drain(), two.drain())
    rows = await _rows(core, ids)
    assert {c.status for c in rows.values()} == {CapsuleStatus.RUNNING}, [
        c.status_reason for c in rows.values()
    ]
    assert {c.start_attempts for c in rows.values()} == {0}
    assert {c.claimed_at for c in rows.values()} == {None}
    assert {capsule_id: creates[capsule_id] for capsule_id in ids} == dict.fromkeys(ids, 1)
    assert set(ids) <= set(fake_host.runtime.specs)  # and each sandbox is there, running
    running = await core.session.scalars(
        select(OutboxEvent.payload).where(
            OutboxEvent.team_id == team_id, OutboxEvent.type == "capsule.running"
        )
    )
    assert sorted(p["capsule_id"] for p in running) == sorted(ids)
    await _destroy(core, team_id, ids)


async def test_failed_starts_are_counted_in_the_row_across_replicas(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    second_fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
) -> None:
    [handle] = fleet.hosts()
    vm = await queued_from_missing_snapshot(core, fleet, team_id)
    settings.provision_max_attempts = 3
    seen = []
    # Each attempt is made by a new provisioner (a restart, or another replica).
    for fleet_ in (fleet, second_fleet, fleet):
        provisioner = Provisioner(core_db, fleet_, settings)
        await provision(provisioner)
        row = (await _rows(core, [vm.id]))[vm.id]
        seen.append((row.status, row.start_attempts, row.host_id))
    assert seen == [
        (CapsuleStatus.PENDING, 1, ""),  # back in the queue it reserves no host's room
        (CapsuleStatus.PENDING, 2, ""),
        (CapsuleStatus.ERROR, 3, handle.host_id),
    ]
    assert "after 3 attempt(s)" in (row.status_reason or "")
    await _destroy(core, team_id, [vm.id])


async def test_claims_left_by_a_crashed_replica_are_recovered(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    creates: Counter[str],
) -> None:
    [handle] = fleet.hosts()
    started, lost, fresh = await _queue(core, fleet, team_id, 3)
    hour_ago = utcnow() - timedelta(hours=1)

    async def claim(capsule_id: str, when: object) -> None:
        # What a replica commits before it asks the host, then crashes.
        await core.session.execute(
            update(Capsule)
            .where(Capsule.id == capsule_id)
            .values(status=CapsuleStatus.STARTING, host_id=handle.host_id, claimed_at=when)
        )
        await core.session.commit()

    for capsule_id in (started, lost):
        await claim(capsule_id, hour_ago)
    await claim(fresh, utcnow())
    # `started` crashed after the host made its sandbox; `lost` before.
    row = (await _rows(core, [started]))[started]
    await handle.client.create_sandbox(sandbox_request(row, "minimal"))
    assert creates[started] == 1

    provisioner = Provisioner(core_db, fleet, settings, claim_timeout=timedelta(minutes=5))
    await provision(provisioner)
    rows = await _rows(core, [started, lost, fresh])
    assert rows[started].status == CapsuleStatus.RUNNING
    assert rows[started].ipv6  # what the host reported
    assert (rows[lost].status, rows[lost].host_id) == (CapsuleStatus.PENDING, "")
    assert rows[fresh].status == CapsuleStatus.STARTING  # not stale: its replica may be at it
    assert (creates[started], creates[lost]) == (1, 0)

    await provision(provisioner)  # the requeued one is started like any queued capsule
    rows = await _rows(core, [lost])
    assert rows[lost].status == CapsuleStatus.RUNNING
    assert (creates[started], creates[lost]) == (1, 1)
    running = await core.session.scalar(
        select(func.count()).where(
            OutboxEvent.type == "capsule.running", OutboxEvent.team_id == team_id
        )
    )
    assert running == 2
    await _destroy(core, team_id, [started, lost, fresh])


async def test_a_destroy_during_the_start_wins(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    fake_host: FakeHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [capsule_id] = await _queue(core, fleet, team_id, 1)
    provisioner = Provisioner(core_db, fleet, settings)
    real = fake_host.runtime.create
    claimed = asyncio.Event()
    go_on = asyncio.Event()

    async def slow(spec: SandboxSpec) -> SandboxInfo:
        claimed.set()
        await go_on.wait()
        return await real(spec)

    monkeypatch.setattr(fake_host.runtime, "create", slow)
    await provisioner.tick()
    await asyncio.wait_for(claimed.wait(), 30)
    row = (await _rows(core, [capsule_id]))[capsule_id]
    assert row.status == CapsuleStatus.STARTING
    # A user's destroy of a starting capsule is not undone by the start finishing.
    destroying = asyncio.create_task(core.capsules.destroy(team_id, capsule_id))
    await asyncio.sleep(0.1)
    go_on.set()
    await destroying
    await core.session.commit()
    await provisioner.drain()
    row = (await _rows(core, [capsule_id]))[capsule_id]
    assert row.status == CapsuleStatus.STOPPED
    assert capsule_id not in fake_host.runtime.specs  # nothing left running on the host
