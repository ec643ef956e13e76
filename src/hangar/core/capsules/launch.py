"""Starting a capsule's sandbox on a host: shared by direct creates and the provisioner."""

from __future__ import annotations

import contextlib
from datetime import datetime

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentClient, AgentError
from hangar.agentproto.models import CreateSandbox, NetworkSpec, Sandbox
from hangar.core.capsules.agents import agent_call, translate
from hangar.core.capsules.lifecycle import initial, moving
from hangar.core.capsules.machine_types import BASE_DISK_GB
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.rules import check_disk_gb, check_name, check_resources
from hangar.core.clock import utcnow
from hangar.core.compute.firewall import FirewallPolicy, from_json, to_json, to_wire, validated
from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidInput, InvalidState
from hangar.core.events.outbox import record
from hangar.core.fleet.gateway import AgentHandle
from hangar.core.ids import new_id


def new_capsule(
    settings: CapsuleSettings,
    team_id: str,
    template: str,
    vcpus: int,
    memory_mb: int,
    timeout_sec: int,
    *,
    name: str | None,
    disk_gb: int | None,
    firewall: FirewallPolicy | None,
    machine_type: str | None,
) -> Capsule:
    """A checked, unsaved capsule row; its host is chosen later.

    Without a `disk_gb` it gets the configured default: every capsule has a bounded disk.
    """
    check_resources(settings, vcpus, memory_mb, timeout_sec)
    disk = (
        settings.default_disk_gb
        if disk_gb is None
        else check_disk_gb(settings, disk_gb, BASE_DISK_GB)
    )
    return Capsule(
        id=new_id(),
        team_id=team_id,
        host_id="",
        template=template,
        vcpus=vcpus,
        memory_mb=memory_mb,
        timeout_sec=timeout_sec,
        status=initial(CapsuleStatus.STARTING),
        name=check_name(name),
        machine_type=machine_type,
        disk_gb=disk,
        firewall=to_json(validated(firewall)) if firewall is not None else None,
        source_name=machine_type or template,
    )


def snapshot_capsule(
    settings: CapsuleSettings,
    snapshot: Template,
    source: Capsule | None,
    name: str | None,
    disk_gb: int | None,
    firewall: FirewallPolicy | None,
) -> Capsule:
    """An unsaved capsule sized like a snapshot (and its source), with its disk and firewall.

    The disk is the size asked for, else the snapshot's (at least the base); `on_snapshot`
    refuses one smaller than the snapshot's.
    """
    if firewall is None and snapshot.firewall is not None:
        firewall = from_json(snapshot.firewall)
    return new_capsule(
        settings,
        snapshot.team_id,
        snapshot.name,
        snapshot.vcpus or settings.min_vcpus,
        snapshot.memory_mb or settings.min_memory_mb,
        0,
        name=name,
        # A machine's disk is at least the base, also from a snapshot of a smaller capsule
        # (or of one made before every capsule had a disk size).
        disk_gb=disk_gb if disk_gb is not None else max(snapshot.disk_gb or 0, BASE_DISK_GB),
        firewall=firewall,
        machine_type=source.machine_type if source is not None else None,
    )


def on_snapshot(capsule: Capsule, snapshot: Template) -> None:
    """Point a new capsule at a ready snapshot (and its host), refusing a smaller disk."""
    if snapshot.status != SnapshotStatus.READY:
        raise InvalidState(f"snapshot {snapshot.name} is {snapshot.status}, not ready")
    if capsule.disk_gb is not None and capsule.disk_gb < (snapshot.disk_gb or 0):
        raise InvalidInput(f"disk size must be at least the snapshot's {snapshot.disk_gb} GiB")
    capsule.template = capsule.source_name = snapshot.name
    capsule.source_snapshot_id = snapshot.id
    capsule.host_id = snapshot.host_id


def sandbox_request(capsule: Capsule, host_template: str) -> CreateSandbox:
    """What the agent is asked to start for a capsule row."""
    network = None
    if capsule.firewall is not None:
        network = NetworkSpec(firewall=to_wire(from_json(capsule.firewall)))
    return CreateSandbox(
        sandbox_id=capsule.id,
        template=host_template,
        vcpus=capsule.vcpus,
        memory_mb=capsule.memory_mb,
        disk_mb=capsule.disk_gb * 1024 if capsule.disk_gb is not None else None,
        network=network,
    )


async def start_sandbox(handle: AgentHandle, capsule: Capsule, host_template: str) -> Sandbox:
    """Start the capsule's sandbox; a failed start leaves nothing on the host (domain error)."""
    try:
        return await handle.client.create_sandbox(sandbox_request(capsule, host_template))
    except AgentError as exc:
        # The agent cleans up a failed start itself; this covers a lost reply.
        with contextlib.suppress(AgentError):
            await handle.client.destroy_sandbox(capsule.id)
        raise translate(exc) from exc


async def record_running(
    session: AsyncSession,
    capsule_id: str,
    handle: AgentHandle,
    sandbox: Sandbox,
    *,
    claimed_before: datetime | None = None,
    created: bool = False,
) -> bool:
    """Record a claimed (`starting`) capsule's sandbox as running on its host; not committed.

    Conditional on the claim still standing (still `starting` on that host; with
    `claimed_before`, claimed before then), so a destroy or a requeue committed meanwhile
    wins: False, and the caller undoes its start. Emits capsule.running (after
    capsule.created with `created`, for a create answered only once it runs).
    """
    now = utcnow()
    status = CapsuleStatus.PAUSED if sandbox.status == "paused" else CapsuleStatus.RUNNING
    where = [
        Capsule.id == capsule_id,
        moving([CapsuleStatus.STARTING], status),
        Capsule.host_id == handle.host_id,
    ]
    if claimed_before is not None:
        where.append(Capsule.claimed_at < claimed_before)
    result = await session.execute(
        update(Capsule)
        .where(*where)
        .values(
            status=status,
            status_reason=None,
            host_ip=handle.host_ip,
            guest_ip=sandbox.guest_ip,
            ipv6=sandbox.ipv6,
            started_at=now,
            last_active_at=now,
            claimed_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        return False
    capsule = await session.get(Capsule, capsule_id, populate_existing=True)
    assert capsule is not None
    if created:
        capsule_event(session, "capsule.created", capsule)
    capsule_event(session, "capsule.running", capsule)
    return True


async def template_ready(client: AgentClient, host_template: str) -> bool:
    """Whether the host already has the template's files (a missing base is built on start)."""
    async with agent_call():
        return any(t.name == host_template for t in await client.list_templates())


def capsule_event(session: AsyncSession, type_: str, capsule: Capsule) -> None:
    """Record a capsule lifecycle event in the outbox."""
    record(
        session,
        type_,
        team_id=capsule.team_id,
        payload={
            "capsule_id": capsule.id,
            "template": capsule.template,
            "vcpus": capsule.vcpus,
            "memory_mb": capsule.memory_mb,
            "host_id": capsule.host_id,
            "status": capsule.status,
        },
    )
