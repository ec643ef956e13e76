"""Snapshots in the core: the disk of VMs made from them, base names per team, name races."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete

from hangar.agentproto.client import AgentUnreachable
from hangar.agentproto.models import Template as HostTemplate
from hangar.core.capsules.machine_types import BASE_DISK_GB
from hangar.core.capsules.models import Capsule
from hangar.core.capsules.rules import MAX_NAME
from hangar.core.capsules.service import CapsuleService
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.errors import Conflict, InvalidInput
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.hosts.models import Host, HostStatus, HostType
from hangar.core.identity.models import Team
from hangar.core.snapshots import modes as snapshots_module
from hangar.core.snapshots.modes import SNAPSHOT, TEMPLATE
from hangar.core.snapshots.service import Pending, SnapshotService

from .conftest import FakeHost, Services


async def _wrenn_snapshot(core: Services, team_id: str, name: str) -> tuple[Capsule, str]:
    """A running VM and a snapshot (by id) of a capsule made without a disk size (as Wrenn
    made them before every capsule had one)."""
    plain = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    plain.disk_gb = None
    await core.session.commit()
    snap = await core.snapshots.take(team_id, plain.id, name, mode=TEMPLATE, overwrite=False)
    await core.session.commit()
    assert snap.disk_gb is None
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()
    return vm, snap.id


async def test_a_vm_from_a_snapshot_without_a_disk_size_gets_a_real_disk(
    core: Services, team_id: str, fake_host: FakeHost
) -> None:
    vm, snap_id = await _wrenn_snapshot(core, team_id, "no-disk")
    made = await core.capsules.create_from_snapshot(team_id, snap_id)
    bigger = await core.capsules.create_from_snapshot(team_id, snap_id, disk_gb=20)
    await core.session.commit()
    # Recorded, enforced by the host, and counted by the disk quota alike.
    assert made.disk_gb == BASE_DISK_GB
    assert fake_host.runtime.specs[made.id].disk_mb == BASE_DISK_GB * 1024
    assert bigger.disk_gb == 20
    assert fake_host.runtime.specs[bigger.id].disk_mb == 20 * 1024
    # A snapshot of a 20 GiB VM gives 20 GiB, and never less.
    snap20 = await core.snapshots.take(team_id, bigger.id, "twenty", mode=SNAPSHOT)
    await core.session.commit()
    from_20 = await core.capsules.create_from_snapshot(team_id, snap20.id)
    await core.session.commit()
    assert (from_20.disk_gb, fake_host.runtime.specs[from_20.id].disk_mb) == (20, 20 * 1024)
    ids = [c.id for c in (vm, made, bigger, from_20)]
    with pytest.raises(InvalidInput):
        await core.capsules.create_from_snapshot(team_id, snap20.id, disk_gb=BASE_DISK_GB)
    await core.session.rollback()

    for capsule_id in ids:
        await core.capsules.destroy(team_id, capsule_id)
    await core.session.commit()


class _StubClient:
    """A host agent that answers template lists only: with bases, never, or not at all."""

    def __init__(self, bases: tuple[str, ...] = (), *, hang: bool = False, down: bool = False):
        self.bases, self.hang, self.down = bases, hang, down

    async def list_templates(self) -> list[HostTemplate]:
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise AgentUnreachable("connection refused")
        return [HostTemplate(name=n, type="base", size_bytes=1, created_at=0.0) for n in self.bases]

    async def aclose(self) -> None:
        pass


@pytest.fixture
async def other_hosts(
    core_db: Database, fleet: Fleet, team_id: str
) -> AsyncIterator[dict[str, Any]]:
    """Hosts beside the regular one: other teams' BYOC ones (hostile, slow), the team's own
    BYOC ones (one with a base, one that hangs) and a regular one that is down."""
    async with core_db.session() as session:
        other = Team(name="Other", slug=f"o-{uuid.uuid4().hex[:20]}")
        session.add(other)
        await session.flush()
        plan = {
            "hostile": (HostType.BYOC, other.id, _StubClient(("claimed-base",))),
            "slow-other": (HostType.BYOC, other.id, _StubClient(hang=True)),
            "own": (HostType.BYOC, team_id, _StubClient(("own-base",))),
            "own-slow": (HostType.BYOC, team_id, _StubClient(hang=True)),
            "down": (HostType.REGULAR, None, _StubClient(down=True)),
        }
        ids = {}
        for key, (type_, owner, _client) in plan.items():
            host = Host(type=type_, team_id=owner, status=HostStatus.ONLINE)
            session.add(host)
            await session.flush()
            ids[key] = host.id
        await session.commit()
    for key, (_type, _owner, client) in plan.items():
        fleet.add(AgentHandle(ids[key], client))  # type: ignore[arg-type]
    try:
        yield ids
    finally:
        for host_id in ids.values():
            fleet.remove(host_id)
        async with core_db.session() as session:
            await session.execute(delete(Host).where(Host.id.in_(list(ids.values()))))
            await session.commit()


async def test_base_templates_come_from_the_teams_hosts_only_and_unwell_hosts_are_skipped(
    core: Services, team_id: str, other_hosts: dict[str, Any]
) -> None:
    async def bases() -> set[str]:
        views = await core.snapshots.list_templates(team_id, None)
        return {v.name for v in views if v.kind == "base"}

    names = await asyncio.wait_for(bases(), 60)
    assert "own-base" in names
    assert "claimed-base" not in names  # another team's BYOC host has no say
    plain = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    await core.session.commit()
    plain_id = plain.id
    with pytest.raises(Conflict):
        await asyncio.wait_for(core.snapshots.begin(team_id, plain_id, "own-base", SNAPSHOT), 60)
    await core.session.rollback()
    pending = await asyncio.wait_for(
        core.snapshots.begin(team_id, plain_id, "claimed-base", SNAPSHOT), 60
    )
    snap = pending.template
    renamed = await asyncio.wait_for(
        core.snapshots.rename_snapshot(team_id, snap.id, "still-mine"), 60
    )
    await core.session.commit()
    assert renamed.name == "still-mine"
    await core.snapshots.finish(pending)
    await core.snapshots.delete_snapshot(team_id, snap.id)
    await core.capsules.destroy(team_id, plain_id)
    await core.session.commit()


async def test_two_concurrent_snapshots_of_one_name_one_wins_one_conflicts(
    core_db: Database, fleet: Fleet, settings: CapsuleSettings, core: Services, team_id: str
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()

    async def snapshot(name: str) -> str:
        async with core_db.session() as session:
            capsules = CapsuleService(session, fleet, settings)
            pending = await SnapshotService(session, fleet, capsules).begin(
                team_id, vm.id, name, SNAPSHOT
            )
            return pending.template.id

    results = await asyncio.gather(snapshot("same"), snapshot("same"), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 1, results
    assert sum(isinstance(r, Conflict) for r in results) == 1, results

    # The loser of the race (its check ran before the winner committed) hits the unique
    # index: a Conflict, and its transaction is still usable.
    async with core_db.session() as session:
        capsules = CapsuleService(session, fleet, settings)
        late = SnapshotService(session, fleet, capsules)

        async def nothing_yet(team: str, name: str) -> None:
            return None

        late.repo.get = nothing_yet  # type: ignore[method-assign,assignment]
        with pytest.raises(Conflict):
            await late.begin(team_id, vm.id, "same", SNAPSHOT)
        other = (await late.begin(team_id, vm.id, "other", SNAPSHOT)).template
        first = next(r for r in results if isinstance(r, str))
        with pytest.raises(Conflict):
            await late.rename_snapshot(team_id, other.id, "same")
        await session.commit()
        await late.rename_snapshot(team_id, first, "renamed")
        await session.commit()
        assert {t.name for t in await late.list_snapshots(team_id)} == {"renamed", "other"}
        for t in await late.list_snapshots(team_id):
            await late.finish(Pending(t, SNAPSHOT))
            await late.delete_snapshot(team_id, t.id)
        await capsules.destroy(team_id, vm.id)
        await session.commit()


async def test_unnamed_snapshots_stamped_in_the_same_second_by_racing_requests_both_succeed(
    core_db: Database,
    fleet: Fleet,
    settings: CapsuleSettings,
    core: Services,
    team_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2", name="stamp")
    await core.session.commit()
    now = utcnow()
    monkeypatch.setattr(snapshots_module, "utcnow", lambda: now)
    first = (await core.snapshots.begin(team_id, vm.id, None, SNAPSHOT)).template
    async with core_db.session() as session:
        capsules = CapsuleService(session, fleet, settings)
        late = SnapshotService(session, fleet, capsules)

        async def nothing_yet(team: str, name: str) -> None:
            return None

        late.repo.get = nothing_yet  # type: ignore[method-assign,assignment]
        second = (await late.begin(team_id, vm.id, None, SNAPSHOT)).template
        assert second.name.startswith(first.name + "-")
        assert len(second.name) <= MAX_NAME
        for t in await late.list_snapshots(team_id):
            await late.finish(Pending(t, SNAPSHOT))
            await late.delete_snapshot(team_id, t.id)
        await capsules.destroy(team_id, vm.id)
        await session.commit()
