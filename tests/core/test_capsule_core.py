"""FastVM's domain core through the services, on a real database and the agent protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from hangar.agent.runtimes.base import Firewall, PortRule
from hangar.core.capsules.models import CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.provisioner import Provisioner
from hangar.core.clock import utcnow
from hangar.core.compute.firewall import FirewallPolicy, FirewallRule
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.errors import Conflict, InvalidInput, InvalidState, NotFound
from hangar.core.events.models import OutboxEvent
from hangar.core.fleet.gateway import Fleet
from hangar.core.snapshots.modes import SNAPSHOT

from .conftest import (
    FakeHost,
    Services,
    host_left_out,
    provision,
    queued_from_missing_snapshot,
)

WEB = FirewallPolicy(ingress=(FirewallRule("tcp", 8080, source_cidrs=("2001:db8::1/48",)),))


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read(core: Services, team_id: str, capsule_id: str, path: str) -> bytes:
    f = await core.capsules.open_file(team_id, capsule_id, path)
    return b"".join([c async for c in f.chunks()])


async def test_vm_gets_its_machine_type_disk_firewall_and_ipv6(
    core: Services, team_id: str, fake_host: FakeHost, settings: CapsuleSettings
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c2m4", name=" web ", firewall=WEB)
    await core.session.commit()
    assert vm.status == CapsuleStatus.RUNNING
    assert (vm.name, vm.vcpus, vm.memory_mb, vm.disk_gb) == ("web", 2, 4096, 10)
    assert (vm.machine_type, vm.source_name) == ("c2m4", "c2m4")
    assert vm.ipv6
    assert ":" in vm.ipv6
    spec = fake_host.runtime.specs[vm.id]
    assert (spec.vcpus, spec.memory_mb, spec.disk_mb) == (2, 4096, 10 * 1024)
    assert fake_host.runtime.firewalls[vm.id] == Firewall(
        "restricted", (PortRule("tcp", 8080, 8080, ("2001:db8::/48",)),)
    )
    # A Wrenn capsule of the same core keeps loopback-only networking and gets the default disk.
    plain = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    await core.session.commit()
    assert (plain.firewall, plain.disk_gb, plain.ipv6) == (None, settings.default_disk_gb, "")
    assert fake_host.runtime.specs[plain.id].disk_mb == settings.default_disk_gb * 1024
    assert fake_host.runtime.specs[plain.id].network is None
    with pytest.raises(InvalidState):
        await core.capsules.set_firewall(team_id, plain.id, FirewallPolicy("open"))
    opened = await core.capsules.set_firewall(team_id, vm.id, FirewallPolicy("open"))
    await core.session.commit()
    assert fake_host.runtime.firewalls[vm.id] == Firewall("open")
    assert opened.firewall is not None
    assert '"mode":"open"' in opened.firewall
    renamed = await core.capsules.rename(team_id, vm.id, "api")
    assert renamed.name == "api"
    with pytest.raises(InvalidInput):
        await core.capsules.rename(team_id, vm.id, "x" * 65)
    with pytest.raises(InvalidInput):
        await core.capsules.create_vm(team_id, machine_type="c3m9")
    with pytest.raises(InvalidInput):
        await core.capsules.create_vm(team_id, machine_type="c1m2", disk_gb=9)
    for capsule in (vm, plain):
        await core.capsules.destroy(team_id, capsule.id)
    await core.session.commit()


async def test_exec_output_is_cut_at_the_documented_limit(
    core: Services, team_id: str, settings: CapsuleSettings
) -> None:
    settings.exec_output_limit_bytes = 10
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()
    out = await core.capsules.exec(team_id, vm.id, ["sh", "-c", "printf %0100d 0; echo e >&2"], 30)
    assert (out.stdout, out.stdout_truncated) == (b"0" * 10, True)
    assert (out.stderr, out.stderr_truncated) == (b"e\n", False)
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()


async def test_queued_vm_is_started_by_the_provisioner(
    core: Services,
    core_db: Database,
    fleet: Fleet,
    team_id: str,
    settings: CapsuleSettings,
    fake_host: FakeHost,
) -> None:
    with host_left_out(fleet) as handle:
        with pytest.raises(Exception, match="host"):
            await core.capsules.create_vm(team_id, machine_type="c1m2")
        vm = await core.capsules.create_vm(team_id, machine_type="c1m2", name="q", queue=True)
        await core.session.commit()
        assert (vm.status, vm.host_id) == (CapsuleStatus.PENDING, "")
        # A pending row is an ordinary live capsule to every other operation.
        assert vm.id in {c.id for c in await core.capsules.list_for_team(team_id)}
        await core.capsules.set_firewall(team_id, vm.id, WEB)
        await core.capsules.rename(team_id, vm.id, "queued")
        with pytest.raises(InvalidState):
            await core.capsules.exec(team_id, vm.id, ["true"], 5)
        dropped = await core.capsules.create_vm(team_id, machine_type="c1m2", queue=True)
        await core.capsules.destroy(team_id, dropped.id)  # never placed: nothing to ask a host
        await core.session.commit()
        assert dropped.status == CapsuleStatus.STOPPED
        provisioner = Provisioner(core_db, fleet, settings)
        await provision(provisioner)
        await core.session.refresh(vm)
        assert vm.status == CapsuleStatus.PENDING
        assert vm.status_reason
        assert vm.status_reason.startswith("waiting for a host")
    await provision(provisioner)
    await core.session.refresh(vm)
    assert vm.status == CapsuleStatus.RUNNING, vm.status_reason
    assert (vm.host_id, vm.name) == (handle.host_id, "queued")
    assert vm.ipv6
    assert fake_host.runtime.firewalls[vm.id].ingress[0].port_start == 8080
    events = (
        await core.session.execute(select(OutboxEvent.type).where(OutboxEvent.team_id == team_id))
    ).scalars()
    assert "capsule.running" in list(events)
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()


async def test_provisioner_gives_up_after_repeated_failures(
    core: Services, core_db: Database, fleet: Fleet, team_id: str, settings: CapsuleSettings
) -> None:
    vm = await queued_from_missing_snapshot(core, fleet, team_id)
    assert vm.status == CapsuleStatus.PENDING
    settings.provision_max_attempts = 2
    provisioner = Provisioner(core_db, fleet, settings)
    await provision(provisioner)
    await core.session.refresh(vm)
    assert vm.status == CapsuleStatus.PENDING
    assert vm.status_reason
    assert "retrying" in vm.status_reason
    await provision(provisioner)
    await core.session.refresh(vm)
    assert vm.status == CapsuleStatus.ERROR
    assert vm.status_reason
    assert "after 2 attempt(s)" in vm.status_reason
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()


async def test_snapshot_keeps_files_disk_and_firewall(
    core: Services, team_id: str, fake_host: FakeHost
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2", disk_gb=20, firewall=WEB)
    await core.session.commit()
    await core.capsules.write_file(team_id, vm.id, "/home/user/kept.txt", _chunks(b"kept"))
    first = await core.snapshots.begin(team_id, vm.id, "first", SNAPSHOT)
    snap = first.template
    assert snap.status == SnapshotStatus.CREATING
    listed = await core.snapshots.list_snapshots(team_id)
    assert [(s.id, s.status) for s in listed] == [(snap.id, SnapshotStatus.CREATING)]
    with pytest.raises(InvalidState):
        await core.capsules.create_from_snapshot(team_id, snap.id)
    with pytest.raises(InvalidState):
        await core.snapshots.delete_snapshot(team_id, snap.id)
    snap = await core.snapshots.finish(first)
    await core.session.commit()
    assert snap.status == SnapshotStatus.READY
    assert snap.size_bytes > 0
    assert (snap.disk_gb, snap.source_capsule_id) == (20, vm.id)
    # The source keeps running; a default name is made from its id and the time.
    assert (await core.capsules.get(team_id, vm.id)).status == CapsuleStatus.RUNNING
    pending = await core.snapshots.begin(team_id, vm.id, None, SNAPSHOT)
    second = pending.template
    assert second.name.startswith(vm.id[:20])
    assert len(second.name) <= 64
    with pytest.raises(Conflict):
        await core.snapshots.begin(team_id, vm.id, "first", SNAPSHOT)
    with pytest.raises(Conflict):
        await core.snapshots.rename_snapshot(team_id, second.id, "first")
    with pytest.raises(Conflict):
        await core.snapshots.rename_snapshot(team_id, second.id, "minimal")
    await core.snapshots.finish(pending)
    await core.session.commit()

    with pytest.raises(InvalidInput):
        await core.capsules.create_from_snapshot(team_id, snap.id, disk_gb=10)
    clone = await core.capsules.create_from_snapshot(team_id, snap.id, name="clone")
    await core.session.commit()
    assert clone.status == CapsuleStatus.RUNNING
    assert (clone.disk_gb, clone.vcpus, clone.memory_mb) == (20, 1, 2048)
    assert (clone.machine_type, clone.source_name, clone.source_snapshot_id) == (
        "c1m2",
        "first",
        snap.id,
    )
    assert clone.firewall == vm.firewall
    assert fake_host.runtime.firewalls[clone.id].ingress[0].port_start == 8080
    assert await _read(core, team_id, clone.id, "/home/user/kept.txt") == b"kept"

    renamed = await core.snapshots.rename_snapshot(team_id, snap.id, "renamed")
    assert renamed.name == "renamed"
    with pytest.raises(Conflict):  # the clone's filesystem sits on it
        await core.snapshots.delete_snapshot(team_id, snap.id)
    for capsule_id in (clone.id, vm.id):
        await core.capsules.destroy(team_id, capsule_id)
    for snapshot_id in (snap.id, second.id):
        await core.snapshots.delete_snapshot(team_id, snapshot_id)
    await core.session.commit()
    with pytest.raises(NotFound):
        await core.snapshots.get_snapshot(team_id, snap.id)
    assert await core.snapshots.list_snapshots(team_id) == []


async def test_snapshot_of_a_vm_destroyed_meanwhile_ends_in_error(
    core: Services, team_id: str
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()
    pending = await core.snapshots.begin(team_id, vm.id, "late", SNAPSHOT)
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()
    snap = await core.snapshots.finish(pending)
    await core.session.commit()
    assert snap.status == SnapshotStatus.ERROR
    assert snap.status_reason == "the source capsule is no longer running"
    await core.snapshots.delete_snapshot(team_id, snap.id)
    await core.session.commit()


async def test_provisioner_fails_snapshots_left_creating_by_a_crash(
    core: Services, core_db: Database, fleet: Fleet, team_id: str, settings: CapsuleSettings
) -> None:
    [handle] = fleet.hosts()
    rows = [
        Template(
            team_id=team_id,
            name=name,
            host_template=f"snap-{name}-{team_id}",
            host_id=handle.host_id,
            status=SnapshotStatus.CREATING,
            created_at=utcnow() - age,
        )
        for name, age in (("old", timedelta(hours=1)), ("recent", timedelta(seconds=5)))
    ]
    core.session.add_all(rows)
    await core.session.commit()
    await Provisioner(core_db, fleet, settings).tick()
    for row in rows:
        await core.session.refresh(row)
    assert [(r.name, r.status) for r in rows] == [
        ("old", SnapshotStatus.ERROR),
        ("recent", SnapshotStatus.CREATING),
    ]
    assert rows[0].status_reason == "snapshot was interrupted"
    for row in rows:
        await core.session.delete(row)
    await core.session.commit()
