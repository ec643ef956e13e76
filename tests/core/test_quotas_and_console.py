"""Team quotas on every create path, and one-time console tokens under concurrency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from hangar.core.capsules.console import ConsoleService
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings, QuotaSettings
from hangar.core.db import Database
from hangar.core.errors import DomainError, InvalidState, NotFound, Unauthenticated
from hangar.core.grants.models import Grant, GrantPurpose
from hangar.core.quotas.rules import QuotaExceeded, QuotaValues
from hangar.core.quotas.service import QuotaService
from hangar.core.snapshots.modes import SNAPSHOT, TEMPLATE

from .conftest import Services


async def test_quotas_refuse_what_would_pass_a_limit(
    core: Services, team_id: str, settings: CapsuleSettings
) -> None:
    quotas = QuotaService(core.session, settings.quotas)
    defaults = QuotaSettings()
    report = await quotas.report(team_id)
    assert report.limits == QuotaValues(
        defaults.vcpu, defaults.memory_mib, defaults.disk_gib, defaults.snapshot_count
    )
    assert report.usage == QuotaValues()
    await quotas.set_limits(team_id, vcpu=3, disk_gib=25, snapshot_count=1)
    await core.session.commit()

    vm = await core.capsules.create_vm(team_id, machine_type="c2m4", disk_gb=15)
    await core.session.commit()
    with pytest.raises(QuotaExceeded) as refused:
        await core.capsules.create_vm(team_id, machine_type="c2m4")
    assert refused.value.code == "quota_exceeded"
    assert refused.value.message == "quota exceeded for vCPUs: requested 2, 1 of 3 remaining"
    with pytest.raises(QuotaExceeded, match="disk"):
        await core.capsules.create_vm(team_id, machine_type="c1m2", disk_gb=11)
    # Wrenn's create goes through the same check; its capsules get the default disk size.
    with pytest.raises(QuotaExceeded, match="vCPUs"):
        await core.capsules.create(
            team_id, template="minimal", vcpus=2, memory_mb=256, timeout_sec=0
        )
    wrenn = await core.capsules.create(
        team_id, template="minimal", vcpus=1, memory_mb=256, timeout_sec=0
    )
    await core.session.commit()
    assert settings.default_disk_gb == 10
    assert (await quotas.report(team_id)).usage == QuotaValues(3, 4096 + 256, 15 + 10, 0)

    pending = await core.snapshots.begin(team_id, vm.id, None, SNAPSHOT)
    snap = pending.template
    with pytest.raises(QuotaExceeded, match="snapshots: requested 1, 0 of 1 remaining"):
        await core.snapshots.begin(team_id, vm.id, None, SNAPSHOT)
    with pytest.raises(QuotaExceeded, match="snapshots"):
        await core.snapshots.take(team_id, wrenn.id, "wrenn-snap", mode=TEMPLATE, overwrite=False)
    await core.snapshots.finish(pending)
    # A clone counts against the quota like any capsule.
    with pytest.raises(QuotaExceeded, match="vCPUs"):
        await core.capsules.create_from_snapshot(team_id, snap.id)

    for capsule_id in (vm.id, wrenn.id):
        await core.capsules.destroy(team_id, capsule_id)
    await core.snapshots.delete_snapshot(team_id, snap.id)
    await core.session.commit()
    assert (await quotas.report(team_id)).usage == QuotaValues()
    assert (await quotas.limits(team_id)).memory_mib == defaults.memory_mib
    with pytest.raises(NotFound):
        await quotas.set_limits("no-such-team", vcpu=1)


async def test_console_tokens_are_single_use_and_expire(
    core: Services, core_db: Database, team_id: str, settings: CapsuleSettings
) -> None:
    vm = await core.capsules.create_vm(team_id, machine_type="c1m2")
    await core.session.commit()
    consoles = ConsoleService(core.session, settings)
    token, ttl = await consoles.issue(team_id, vm.id)
    await core.session.commit()
    assert ttl == settings.console_token_ttl_seconds == 60
    assert len(token) >= 43
    with pytest.raises(NotFound):
        await consoles.issue("another-team", vm.id)

    async def redeem(capsule_id: str, value: str) -> str:
        async with core_db.session() as session:
            try:
                capsule = await ConsoleService(session, settings).redeem(capsule_id, value)
                await session.commit()
                return capsule.id
            except DomainError as exc:
                await session.rollback()
                return exc.code

    # Concurrent redeems of one token: exactly one wins, on either database.
    results = await asyncio.gather(*(redeem(vm.id, token) for _ in range(6)))
    assert sorted(results) == sorted([vm.id] + [Unauthenticated.code] * 5)
    assert await redeem(vm.id, token) == Unauthenticated.code

    other, _ = await consoles.issue(team_id, vm.id)
    expired, _ = await consoles.issue(team_id, vm.id)
    await core.session.execute(
        update(Grant)
        .where(Grant.expires_at > utcnow() + timedelta(seconds=30))
        .where(Grant.purpose == GrantPurpose.CONSOLE, Grant.subject_id == vm.id)
        .where(Grant.used_at.is_(None))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await core.session.commit()
    assert await redeem(vm.id, other) == Unauthenticated.code  # expired too
    assert await redeem(vm.id, expired) == Unauthenticated.code
    fresh, _ = await consoles.issue(team_id, vm.id)
    await core.session.commit()
    assert await redeem("another-capsule", fresh) == Unauthenticated.code
    assert await redeem(vm.id, "not-a-token") == Unauthenticated.code
    assert await redeem(vm.id, fresh) == vm.id

    await core.capsules.pause(team_id, vm.id)
    await core.session.commit()
    with pytest.raises(InvalidState):
        await consoles.issue(team_id, vm.id)
    await core.capsules.destroy(team_id, vm.id)
    await core.session.commit()
