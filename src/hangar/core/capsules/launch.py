"""Starting a capsule's sandbox on a host: shared by direct creates and the provisioner."""

from __future__ import annotations

import contextlib

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentClient, AgentError
from hangar.agentproto.models import CreateSandbox, NetworkSpec, Sandbox
from hangar.core.capsules.agents import agent_call, translate
from hangar.core.capsules.firewall import FirewallPolicy, from_json, to_json, to_wire, validated
from hangar.core.capsules.machine_types import BASE_DISK_GB
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.rules import check_disk_gb, check_name, check_resources
from hangar.core.clock import utcnow
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
    """A checked, unsaved capsule row; its host is chosen later."""
    check_resources(settings, vcpus, memory_mb, timeout_sec)
    return Capsule(
        id=new_id(),
        team_id=team_id,
        host_id="",
        template=template,
        vcpus=vcpus,
        memory_mb=memory_mb,
        timeout_sec=timeout_sec,
        status=CapsuleStatus.STARTING,
        name=check_name(name),
        machine_type=machine_type,
        disk_gb=check_disk_gb(settings, disk_gb, BASE_DISK_GB),
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

    The disk is the size asked for, else the snapshot's, else the base; `on_snapshot` refuses
    one smaller than the snapshot's.
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
        # Always a real, enforced (and quota-counted) disk: a snapshot Wrenn made has no size.
        disk_gb=disk_gb if disk_gb is not None else snapshot.disk_gb or BASE_DISK_GB,
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


def mark_running(capsule: Capsule, handle: AgentHandle, sandbox: Sandbox) -> None:
    """Record on the row that its sandbox runs on `handle`'s host."""
    now = utcnow()
    capsule.host_id = handle.host_id
    capsule.host_ip = handle.host_ip
    capsule.status = CapsuleStatus.RUNNING
    capsule.status_reason = None
    capsule.guest_ip = sandbox.guest_ip
    capsule.ipv6 = sandbox.ipv6
    capsule.started_at = now
    capsule.last_active_at = now


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
