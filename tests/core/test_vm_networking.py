"""VMs in the core: snapshot VMs are networked, PATCH-style policy changes, deleted VMs."""

from __future__ import annotations

import asyncio

import pytest

from hangar.agent.runtimes.base import Firewall, PortRule
from hangar.agentproto.models import FirewallPolicy as WirePolicy
from hangar.agentproto.models import Sandbox
from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.capsules.provisioner import Provisioner
from hangar.core.capsules.service import CapsuleService
from hangar.core.compute.firewall import (
    DEFAULT_POLICY,
    FirewallPolicy,
    FirewallRule,
    from_json,
    to_json,
    validated,
)
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.errors import InvalidInput, InvalidState, NotFound
from hangar.core.fleet.gateway import Fleet
from hangar.core.snapshots.modes import TEMPLATE

from .conftest import FakeHost, Services, host_left_out, provision

WEB = FirewallPolicy(ingress=(FirewallRule("tcp", 8080),))
WEB_RULE = PortRule("tcp", 8080, 8080, ("::/0",))


async def test_a_vm_from_a_snapshot_without_a_policy_gets_the_default_one(
    core: Services, team_id: str, fake_host: FakeHost
) -> None:
    # A snapshot another face (Wrenn) made of a capsule without networking has no policy.
    plain = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    snap = await core.snapshots.take(
        team_id, plain.id, "plain-snap", mode=TEMPLATE, overwrite=False
    )
    await core.session.commit()
    assert snap.firewall is None

    vm = await core.capsules.create_from_snapshot(team_id, snap.id)
    await core.session.commit()
    assert vm.status == CapsuleStatus.RUNNING
    assert vm.firewall == to_json(DEFAULT_POLICY)
    assert vm.ipv6
    assert fake_host.runtime.firewalls[vm.id] == Firewall("restricted")
    # A policy given wins; without networking asked for, none is made up.
    web = await core.capsules.create_from_snapshot(team_id, snap.id, firewall=WEB)
    bare = await core.capsules.create_from_snapshot(team_id, snap.id, networked=False)
    await core.session.commit()
    assert fake_host.runtime.firewalls[web.id] == Firewall("restricted", (WEB_RULE,))
    assert (bare.firewall, bare.ipv6) == (None, "")
    assert fake_host.runtime.specs[bare.id].network is None

    for capsule in (vm, web, bare):
        await core.capsules.destroy(team_id, capsule.id)
    await core.snapshots.delete(team_id, snap.name)
    await core.session.commit()


async def test_patch_firewall_changes_only_the_fields_given(
    core: Services, team_id: str, fake_host: FakeHost
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2", firewall=WEB)
    await core.session.commit()
    opened = await core.capsules.patch_firewall(team_id, vm.id, "open", None)
    await core.session.commit()
    assert fake_host.runtime.firewalls[vm.id] == Firewall("open", (WEB_RULE,))
    assert opened.firewall is not None
    assert from_json(opened.firewall) == FirewallPolicy(
        "open", (FirewallRule("tcp", 8080, 8080, ("::/0",)),)
    )
    closed = await core.capsules.patch_firewall(team_id, vm.id, None, ())
    await core.session.commit()
    assert closed.firewall == to_json(FirewallPolicy("open"))
    assert fake_host.runtime.firewalls[vm.id] == Firewall("open")
    with pytest.raises(InvalidInput):
        await core.capsules.patch_firewall(team_id, vm.id, "shut", None)
    with pytest.raises(InvalidInput):
        await core.capsules.patch_firewall(team_id, vm.id, None, (FirewallRule("icmp", 1),))
    assert fake_host.runtime.firewalls[vm.id] == Firewall("open")  # refused: unchanged

    plain = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    await core.session.commit()
    with pytest.raises(InvalidState):  # made without networking
        await core.capsules.patch_firewall(team_id, plain.id, "open", None)
    for capsule in (vm, plain):
        await core.capsules.destroy(team_id, capsule.id)
    await core.session.commit()
    with pytest.raises(NotFound):
        await core.capsules.patch_firewall(team_id, vm.id, "open", None)


async def test_a_destroyed_vm_is_readable_only_when_asked_and_only_by_its_team(
    core: Services, team_id: str, fake_host: FakeHost
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()
    destroyed = await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()
    assert destroyed.id == vm.id
    assert destroyed.status == CapsuleStatus.STOPPED
    assert destroyed.destroyed_at is not None
    assert vm.id not in fake_host.runtime.specs
    with pytest.raises(NotFound):
        await core.capsules.get(team_id, vm.id)
    with pytest.raises(NotFound):
        await core.capsules.destroy(team_id, vm.id)
    read = await core.capsules.get(team_id, vm.id, include_destroyed=True)
    assert (read.id, read.status) == (vm.id, CapsuleStatus.STOPPED)
    assert read.destroyed_at == destroyed.destroyed_at
    assert vm.id not in {c.id for c in await core.capsules.list_for_team(team_id)}
    with pytest.raises(NotFound):
        await core.capsules.get("another-team", vm.id, include_destroyed=True)
    with pytest.raises(NotFound):
        await core.capsules.get(team_id, "", include_destroyed=True)


async def test_a_firewall_put_racing_the_provisioners_claim_is_what_the_host_enforces(
    core: Services,
    team_id: str,
    fake_host: FakeHost,
    core_db: Database,
    fleet: Fleet,
    settings: CapsuleSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with host_left_out(fleet):
        vm = await core.capsules.create_vm(team_id, machine_type="c1m2", queue=True)
        await core.session.commit()
    assert vm.status == CapsuleStatus.PENDING
    real_get = core.capsules.get

    async def read_then_claimed(team: str, capsule_id: str) -> Capsule:
        # The PUT read the VM as pending; the provisioner claims and starts it meanwhile.
        capsule = await real_get(team, capsule_id)
        await provision(Provisioner(core_db, fleet, settings))
        return capsule

    monkeypatch.setattr(core.capsules, "get", read_then_claimed)
    await core.capsules.set_firewall(team_id, vm.id, WEB)
    await core.session.commit()
    monkeypatch.undo()
    async with core_db.session() as session:
        row = await session.get(Capsule, vm.id)
        assert row is not None
        assert row.status == CapsuleStatus.RUNNING
        assert row.firewall == to_json(validated(WEB))
    assert fake_host.runtime.firewalls[vm.id] == Firewall("restricted", (WEB_RULE,))
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()


async def test_a_firewall_put_on_a_pending_vm_is_what_it_starts_with(
    core: Services,
    team_id: str,
    fake_host: FakeHost,
    core_db: Database,
    fleet: Fleet,
    settings: CapsuleSettings,
) -> None:
    with host_left_out(fleet):
        vm = await core.capsules.create_vm(team_id, machine_type="c1m2", queue=True)
        await core.session.commit()
        await core.capsules.set_firewall(team_id, vm.id, WEB)
        await core.session.commit()
    await provision(Provisioner(core_db, fleet, settings))
    assert fake_host.runtime.firewalls[vm.id] == Firewall("restricted", (WEB_RULE,))
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()


async def test_concurrent_firewall_puts_leave_the_row_and_the_host_agreeing(
    core: Services,
    team_id: str,
    fake_host: FakeHost,
    core_db: Database,
    fleet: Fleet,
    settings: CapsuleSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()
    first = FirewallPolicy("open")
    first_applied, second_done = asyncio.Event(), asyncio.Event()
    [handle] = fleet.hosts()
    real_set = handle.client.set_firewall

    async def set_slowly(sandbox_id: str, policy: WirePolicy) -> Sandbox:
        applied = await real_set(sandbox_id, policy)
        if policy.mode == "open" and not first_applied.is_set():
            # The first PUT reached the host; the second reaches it and commits before the
            # first commits.
            first_applied.set()
            await asyncio.wait_for(second_done.wait(), 60)
        return applied

    monkeypatch.setattr(handle.client, "set_firewall", set_slowly)

    async def put(policy: FirewallPolicy) -> None:
        async with core_db.session() as session:
            await CapsuleService(session, fleet, settings).set_firewall(team_id, vm.id, policy)
            await session.commit()

    first_put = asyncio.create_task(put(first))
    await asyncio.wait_for(first_applied.wait(), 60)
    await put(WEB)
    second_done.set()
    await asyncio.wait_for(first_put, 60)
    async with core_db.session() as session:
        row = await session.get(Capsule, vm.id)
        assert row is not None
        assert row.firewall is not None
        stored = from_json(row.firewall)
    enforced = fake_host.runtime.firewalls[vm.id]
    assert enforced.mode == stored.mode
    assert stored == first  # the last to commit, and so the last to reach the host
    assert enforced == Firewall("open")
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()


async def test_a_scoped_source_is_refused_by_the_core_before_any_vm_is_queued(
    core: Services, team_id: str, fleet: Fleet
) -> None:
    scoped = FirewallPolicy(ingress=(FirewallRule("tcp", 22, source_cidrs=("fe80::1%eth0/128",)),))
    with host_left_out(fleet), pytest.raises(InvalidInput):
        await core.capsules.create_vm(team_id, machine_type="c1m2", firewall=scoped, queue=True)
    await core.session.rollback()
