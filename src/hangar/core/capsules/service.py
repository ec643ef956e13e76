"""Capsule lifecycle, commands and files. Services never commit; the caller does."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentStream, AsyncFile
from hangar.agentproto.models import ExecRequest, FileEntry, MetricPoint
from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.firewall import DEFAULT_POLICY, FirewallPolicy
from hangar.core.capsules.launch import (
    capsule_event,
    mark_running,
    new_capsule,
    on_snapshot,
    snapshot_capsule,
    start_sandbox,
    template_ready,
)
from hangar.core.capsules.machine_types import BASE_DISK_GB
from hangar.core.capsules.machine_types import machine_type as lookup_machine_type
from hangar.core.capsules.models import Capsule, CapsuleStatus, MetricSample, Template
from hangar.core.capsules.networking import CapsuleNetworking
from hangar.core.capsules.repository import CapsuleRepository, TemplateRepository
from hangar.core.capsules.rules import check_name, sandbox_path
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.errors import DomainError, InvalidInput, InvalidState, NotFound, Unavailable
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.quotas.service import QuotaService

DEFAULT_TEMPLATE = "minimal"


@dataclass(frozen=True)
class ExecOutcome:
    """A finished command."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    duration_ms: int
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool


class CapsuleService(CapsuleNetworking):
    """What a team can do with its capsules (firewall operations in networking.py)."""

    def __init__(self, session: AsyncSession, fleet: Fleet, settings: CapsuleSettings) -> None:
        self.session = session
        self.fleet = fleet
        self.settings = settings
        self.capsules = CapsuleRepository(session)
        self.templates = TemplateRepository(session)
        self.quotas = QuotaService(session, settings.quotas)

    async def get(
        self, team_id: str, capsule_id: str, *, include_destroyed: bool = False
    ) -> Capsule:
        """A live (or any, when asked) capsule of the team, else NotFound (for other teams too)."""
        capsule = None
        if capsule_id and include_destroyed:
            capsule = await self.capsules.get_owned(team_id, capsule_id)
        elif capsule_id:
            capsule = await self.capsules.get_live(team_id, capsule_id)
        if capsule is None:
            raise NotFound("capsule not found")
        return capsule

    async def list_for_team(self, team_id: str) -> list[Capsule]:
        """The team's capsules."""
        return list(await self.capsules.list_live(team_id))

    async def running(self, team_id: str, capsule_id: str) -> Capsule:
        """A capsule that must be running for the operation asked."""
        capsule = await self.get(team_id, capsule_id)
        if capsule.status != CapsuleStatus.RUNNING:
            raise InvalidState(f"capsule is {capsule.status}, not running")
        return capsule

    async def create(
        self,
        team_id: str,
        *,
        template: str,
        vcpus: int,
        memory_mb: int,
        timeout_sec: int,
        name: str | None = None,
        disk_gb: int | None = None,
        firewall: FirewallPolicy | None = None,
        machine_type: str | None = None,
        queue: bool = False,
    ) -> Capsule:
        """Place and start a capsule; nothing is left behind if the host fails to start it.

        `machine_type` sets vcpus and memory; `firewall` gives it an IPv6 address behind that
        policy; with `queue`, one no host can start now is kept `pending` for the provisioner.
        """
        if machine_type is not None:
            size = lookup_machine_type(machine_type)
            vcpus, memory_mb = size.vcpus, size.memory_mb
        capsule = new_capsule(
            self.settings,
            team_id,
            template,
            vcpus,
            memory_mb,
            timeout_sec,
            name=name,
            disk_gb=disk_gb,
            firewall=firewall,
            machine_type=machine_type,
        )
        snapshot = await self.templates.get(team_id, template)
        if snapshot is not None:
            return await self._start_from(capsule, snapshot, queue=queue)
        handle = await self._place(capsule, queue, None)
        if handle is None:
            return await self._queue(capsule)
        host_template = template
        if template != DEFAULT_TEMPLATE:  # every host can build the default: skip the call
            async with agent_call():
                listed = await handle.client.list_templates()
            if template not in {t.name for t in listed if t.type == "base"}:
                raise InvalidInput(f"unknown template: {template}")
        elif queue and not await template_ready(handle.client, template):
            # Building the default takes minutes: answer now, start it in the background.
            return await self._queue(capsule)
        return await self._start(capsule, handle, host_template)

    async def _start_from(self, capsule: Capsule, snapshot: Template, *, queue: bool) -> Capsule:
        """Start a capsule on a snapshot template; snapshots live on one host."""
        on_snapshot(capsule, snapshot)
        handle = await self._place(capsule, queue, snapshot.host_id)
        if handle is None:
            return await self._queue(capsule)
        return await self._start(capsule, handle, snapshot.host_template)

    async def _place(
        self, capsule: Capsule, queue: bool, host_id: str | None
    ) -> AgentHandle | None:
        """After the team's quota allows it, a host; None when none can take it and `queue`."""
        team_id, vcpus, memory_mb = capsule.team_id, capsule.vcpus, capsule.memory_mb
        await self.quotas.check_capsule(team_id, vcpus, memory_mb, capsule.disk_gb)
        try:
            return await self.fleet.place(self.session, team_id, vcpus, memory_mb, host_id=host_id)
        except Unavailable:
            if not queue:
                raise
            return None

    async def _start(self, capsule: Capsule, handle: AgentHandle, host_template: str) -> Capsule:
        sandbox = await start_sandbox(handle, capsule, host_template)
        mark_running(capsule, handle, sandbox)
        self.session.add(capsule)
        self._event("capsule.created", capsule)
        self._event("capsule.running", capsule)
        await self.session.flush()
        return capsule

    async def _queue(self, capsule: Capsule) -> Capsule:
        # No host until the provisioner picks one, so it reserves no host's room meanwhile.
        capsule.host_id = ""
        capsule.status = CapsuleStatus.PENDING
        capsule.status_reason = "waiting for a host"
        self.session.add(capsule)
        self._event("capsule.created", capsule)
        await self.session.flush()
        return capsule

    async def create_vm(
        self,
        team_id: str,
        *,
        machine_type: str,
        name: str | None = None,
        disk_gb: int | None = None,
        firewall: FirewallPolicy | None = None,
        queue: bool = False,
    ) -> Capsule:
        """A machine of a type: default template, base disk, IPv6 behind `firewall` (closed)."""
        return await self.create(
            team_id,
            template=DEFAULT_TEMPLATE,
            vcpus=0,  # both from the machine type
            memory_mb=0,
            timeout_sec=0,  # machines never auto-pause
            name=name,
            disk_gb=BASE_DISK_GB if disk_gb is None else disk_gb,
            firewall=DEFAULT_POLICY if firewall is None else firewall,
            machine_type=machine_type,
            queue=queue,
        )

    async def create_from_snapshot(
        self,
        team_id: str,
        snapshot_id: str,
        *,
        name: str | None = None,
        disk_gb: int | None = None,
        firewall: FirewallPolicy | None = None,
        queue: bool = False,
        networked: bool = True,
    ) -> Capsule:
        """Start a capsule from a team's ready snapshot, with its size, disk and firewall.

        `networked` (a VM) gives it an IPv6 address behind the default policy when neither
        `firewall` nor the snapshot (say, of a capsule another face made) has a policy.
        """
        snapshot = await self.templates.get_by_id(team_id, snapshot_id) if snapshot_id else None
        if snapshot is None:
            raise NotFound("snapshot not found")
        if networked and firewall is None and snapshot.firewall is None:
            firewall = DEFAULT_POLICY
        source = await self.capsules.get_any(snapshot.source_capsule_id)
        capsule = snapshot_capsule(self.settings, snapshot, source, name, disk_gb, firewall)
        return await self._start_from(capsule, snapshot, queue=queue)

    async def rename(self, team_id: str, capsule_id: str, name: str) -> Capsule:
        """Give a capsule a new display name."""
        capsule = await self.get(team_id, capsule_id)
        capsule.name = check_name(name)
        await self.session.flush()
        return capsule

    def _event(self, type_: str, capsule: Capsule) -> None:
        capsule_event(self.session, type_, capsule)

    async def destroy(self, team_id: str, capsule_id: str) -> Capsule:
        """Destroy a capsule (its host first, so nothing keeps running unbilled)."""
        capsule = await self.get(team_id, capsule_id)
        await self.destroy_row(capsule)
        return capsule

    async def destroy_row(self, capsule: Capsule) -> None:
        """Destroy a capsule already loaded."""
        await self.destroy_sandbox(capsule)
        await self.mark_destroyed(capsule)

    async def destroy_sandbox(self, capsule: Capsule) -> None:
        """Destroy a loaded capsule's sandbox on its host; writes nothing (its row is next)."""
        if not capsule.host_id:
            pass  # queued and never placed: no host has anything of it
        elif capsule.status in (CapsuleStatus.PENDING, CapsuleStatus.STARTING):
            # Claimed by a provisioner, which re-checks the row after its start and removes
            # what it made; an unreachable host's leftovers are destroyed as orphans later.
            with contextlib.suppress(DomainError):
                async with agent_call():
                    await self.fleet.agent(capsule.host_id).destroy_sandbox(capsule.id)
        elif capsule.status != CapsuleStatus.MISSING:
            async with agent_call():
                await self.fleet.agent(capsule.host_id).destroy_sandbox(capsule.id)

    async def mark_destroyed(self, capsule: Capsule) -> None:
        """Record a capsule destroyed, after `destroy_sandbox` (no agent call: no lock held)."""
        capsule.status = CapsuleStatus.STOPPED
        capsule.destroyed_at = utcnow()
        self._event("capsule.destroyed", capsule)
        await self.session.flush()

    async def touch(self, capsule: Capsule) -> None:
        """Reset the inactivity timer."""
        capsule.last_active_at = utcnow()
        await self.session.flush()

    async def ping(self, team_id: str, capsule_id: str) -> None:
        """Keep a running capsule from auto-pausing."""
        await self.touch(await self.running(team_id, capsule_id))

    async def exec(
        self, team_id: str, capsule_id: str, argv: list[str], timeout_sec: int
    ) -> ExecOutcome:
        """Run a command to completion; it is killed when the timeout passes."""
        if not 1 <= timeout_sec <= self.settings.max_exec_timeout_sec:
            raise InvalidInput(
                f"timeout_sec must be between 1 and {self.settings.max_exec_timeout_sec}"
            )
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            r = await self.fleet.agent(capsule.host_id).exec(
                capsule.id, ExecRequest(argv=argv, timeout=timeout_sec)
            )
        # Touched after the command, not before: a write here would hold the database's
        # write lock (SQLite) for as long as the command runs.
        await self.touch(capsule)
        out, err = base64.b64decode(r.stdout_b64), base64.b64decode(r.stderr_b64)
        limit = self.settings.exec_output_limit_bytes
        return ExecOutcome(
            stdout=out[:limit],
            stderr=err[:limit],
            exit_code=r.exit_code,
            duration_ms=r.duration_ms,
            timed_out=r.timed_out,
            stdout_truncated=r.stdout_truncated or len(out) > limit,
            stderr_truncated=r.stderr_truncated or len(err) > limit,
        )

    async def pause(self, team_id: str, capsule_id: str) -> Capsule:
        """Freeze a running capsule, keeping its metrics readable while it sleeps."""
        capsule = await self.running(team_id, capsule_id)
        await self.pause_row(capsule)
        return capsule

    async def pause_row(self, capsule: Capsule) -> None:
        """Pause a capsule already loaded and known to be running."""
        agent = self.fleet.agent(capsule.host_id)
        async with agent_call():
            await agent.pause(capsule.id)
            rows = [
                MetricSample(
                    capsule_id=capsule.id,
                    tier=tier,
                    timestamp_unix=p.timestamp_unix,
                    cpu_pct=p.cpu_pct,
                    mem_bytes=p.mem_bytes,
                    disk_bytes=p.disk_bytes,
                )
                for tier in ("10m", "2h", "24h")
                for p in _dedupe((await agent.metrics(capsule.id, tier)).points)
            ]
        await self.capsules.replace_metric_samples(capsule.id, rows)
        capsule.status = CapsuleStatus.PAUSED
        self._event("capsule.paused", capsule)
        await self.session.flush()

    async def resume(self, team_id: str, capsule_id: str) -> Capsule:
        """Thaw a paused capsule."""
        capsule = await self.get(team_id, capsule_id)
        if capsule.status != CapsuleStatus.PAUSED:
            raise InvalidState(f"capsule is {capsule.status}, not paused")
        async with agent_call():
            await self.fleet.agent(capsule.host_id).resume(capsule.id)
        capsule.status = CapsuleStatus.RUNNING
        capsule.last_active_at = utcnow()
        self._event("capsule.running", capsule)
        await self.session.flush()
        return capsule

    async def open_stream(self, team_id: str, capsule_id: str, kind: str) -> AgentStream:
        """A process or PTY stream to a running capsule."""
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            stream = await self.fleet.agent(capsule.host_id).stream(capsule.id, kind)
        # Touched once the stream is open: a write before it would hold the database's write
        # lock (SQLite) for as long as the agent takes to answer.
        try:
            await self.touch(capsule)
        except BaseException:
            await stream.close()
            raise
        return stream

    # files ---------------------------------------------------------------------------------

    async def open_file(self, team_id: str, capsule_id: str, path: str) -> AsyncFile:
        """Start streaming a file out of a capsule."""
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            return await self.fleet.agent(capsule.host_id).open_file(capsule.id, sandbox_path(path))

    async def write_file(
        self, team_id: str, capsule_id: str, path: str, chunks: AsyncIterable[bytes]
    ) -> int:
        """Stream a file into a capsule, refusing more than the configured size."""
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            return await self.fleet.agent(capsule.host_id).write_file(
                capsule.id, sandbox_path(path), chunks, max_bytes=self.settings.max_file_bytes
            )

    async def list_dir(
        self, team_id: str, capsule_id: str, path: str, depth: int
    ) -> list[FileEntry]:
        """Directory entries, `depth` levels deep."""
        if not 0 <= depth <= 32:
            raise InvalidInput("depth must be between 0 and 32")
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            return await self.fleet.agent(capsule.host_id).list_dir(
                capsule.id, sandbox_path(path), max(depth, 1)
            )

    async def make_dir(self, team_id: str, capsule_id: str, path: str) -> FileEntry:
        """Create a directory and its parents."""
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            return await self.fleet.agent(capsule.host_id).make_dir(capsule.id, sandbox_path(path))

    async def remove(self, team_id: str, capsule_id: str, path: str) -> None:
        """Remove a file or directory tree."""
        capsule = await self.running(team_id, capsule_id)
        target = sandbox_path(path)
        if target == "/":
            raise InvalidInput("refusing to remove the capsule's root")
        async with agent_call():
            await self.fleet.agent(capsule.host_id).remove(capsule.id, target)


def _dedupe(points: list[MetricPoint]) -> list[MetricPoint]:
    # Two 500 ms samples share a whole-second timestamp; keep the first of each second.
    seen: set[int] = set()
    out: list[MetricPoint] = []
    for p in points:
        if p.timestamp_unix not in seen:
            seen.add(p.timestamp_unix)
            out.append(p)
    return out
