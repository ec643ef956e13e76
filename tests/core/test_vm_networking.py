"""VMs in the core: snapshot VMs are networked, PATCH-style policy changes, deleted VMs."""

from __future__ import annotations

import pytest

from hangar.agent.runtimes.base import Firewall, PortRule
from hangar.core.capsules.firewall import (
    DEFAULT_POLICY,
    FirewallPolicy,
    FirewallRule,
    from_json,
    to_json,
)
from hangar.core.capsules.models import CapsuleStatus
from hangar.core.errors import InvalidInput, InvalidState, NotFound

from .conftest import FakeHost, Services

WEB = FirewallPolicy(ingress=(FirewallRule("tcp", 8080),))
WEB_RULE = PortRule("tcp", 8080, 8080, ("::/0",))


async def test_a_vm_from_a_snapshot_without_a_policy_gets_the_default_one(
    core: Services, team_id: str, fake_host: FakeHost
) -> None:
    # A snapshot another face (Wrenn) made of a capsule without networking has no policy.
    plain = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    snap = await core.snapshots.create(team_id, plain.id, "plain-snap", overwrite=False)
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
