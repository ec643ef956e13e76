"""Capsule lifecycle, commands and files. Services never commit; the caller does."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentError, AgentStream, AsyncFile
from hangar.agentproto.models import CreateSandbox, ExecRequest, FileEntry, MetricPoint
from hangar.core.capsules.agents import agent_call, translate
from hangar.core.capsules.models import Capsule, CapsuleStatus, MetricSample
from hangar.core.capsules.repository import CapsuleRepository, TemplateRepository
from hangar.core.capsules.rules import check_resources, sandbox_path
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidInput, InvalidState, NotFound
from hangar.core.events.outbox import record
from hangar.core.fleet.gateway import Fleet
from hangar.core.ids import new_id

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


class CapsuleService:
    """What a team can do with its capsules."""

    def __init__(self, session: AsyncSession, fleet: Fleet, settings: CapsuleSettings) -> None:
        self.session = session
        self.fleet = fleet
        self.settings = settings
        self.capsules = CapsuleRepository(session)
        self.templates = TemplateRepository(session)

    async def get(self, team_id: str, capsule_id: str) -> Capsule:
        """A live capsule of the team, else NotFound (other teams' capsules look absent)."""
        capsule = await self.capsules.get_live(team_id, capsule_id) if capsule_id else None
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
        self, team_id: str, *, template: str, vcpus: int, memory_mb: int, timeout_sec: int
    ) -> Capsule:
        """Place and start a capsule; nothing is left behind if the host fails to start it."""
        check_resources(self.settings, vcpus, memory_mb, timeout_sec)
        snapshot = await self.templates.get(team_id, template)
        if snapshot is not None:
            handle_id, host_template = snapshot.host_id, snapshot.host_template
            handle = next((h for h in self.fleet.hosts() if h.host_id == handle_id), None)
            if handle is None:
                self.fleet.agent(handle_id)  # raises host_unavailable
                raise AssertionError
        else:
            handle = self.fleet.place(vcpus, memory_mb)
            host_template = template
            async with agent_call():
                bases = {t.name for t in await handle.client.list_templates() if t.type == "base"}
            if template not in bases | {DEFAULT_TEMPLATE}:
                raise InvalidInput(f"unknown template: {template}")
        capsule = Capsule(
            id=new_id(),
            team_id=team_id,
            host_id=handle.host_id,
            template=template,
            vcpus=vcpus,
            memory_mb=memory_mb,
            timeout_sec=timeout_sec,
            status=CapsuleStatus.STARTING,
            host_ip=handle.host_ip,
        )
        request = CreateSandbox(
            sandbox_id=capsule.id, template=host_template, vcpus=vcpus, memory_mb=memory_mb
        )
        try:
            sandbox = await handle.client.create_sandbox(request)
        except AgentError as exc:
            # The agent cleans up a failed start itself; this covers a lost reply.
            with contextlib.suppress(AgentError):
                await handle.client.destroy_sandbox(capsule.id)
            raise translate(exc) from exc
        now = utcnow()
        capsule.status = CapsuleStatus.RUNNING
        capsule.guest_ip = sandbox.guest_ip
        capsule.started_at = now
        capsule.last_active_at = now
        self.session.add(capsule)
        self._event("capsule.created", capsule)
        self._event("capsule.running", capsule)
        await self.session.flush()
        return capsule

    def _event(self, type_: str, capsule: Capsule) -> None:
        record(
            self.session,
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

    async def destroy(self, team_id: str, capsule_id: str) -> None:
        """Destroy a capsule (its host first, so nothing keeps running unbilled)."""
        capsule = await self.get(team_id, capsule_id)
        await self.destroy_row(capsule)

    async def destroy_row(self, capsule: Capsule) -> None:
        """Destroy a capsule already loaded."""
        if capsule.status != CapsuleStatus.MISSING:
            async with agent_call():
                await self.fleet.agent(capsule.host_id).destroy_sandbox(capsule.id)
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
        return ExecOutcome(
            stdout=base64.b64decode(r.stdout_b64),
            stderr=base64.b64decode(r.stderr_b64),
            exit_code=r.exit_code,
            duration_ms=r.duration_ms,
            timed_out=r.timed_out,
            stdout_truncated=r.stdout_truncated,
            stderr_truncated=r.stderr_truncated,
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
        await self.touch(capsule)
        async with agent_call():
            return await self.fleet.agent(capsule.host_id).stream(capsule.id, kind)

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
