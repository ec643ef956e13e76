"""Capsule lifecycle, commands and files.

Services never commit, the caller does, with two exceptions that must: a create commits its
reservation before any agent is asked (and its outcome after), and a destroy notes itself
before asking the host.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentStream, AsyncFile
from hangar.agentproto.models import ExecRequest, FileEntry, MetricPoint
from hangar.core.capsules.agents import agent_call
from hangar.core.capsules.creation import CapsuleCreation
from hangar.core.capsules.launch import capsule_event
from hangar.core.capsules.lifecycle import move
from hangar.core.capsules.models import Capsule, CapsuleStatus, MetricSample
from hangar.core.capsules.networking import CapsuleNetworking
from hangar.core.capsules.repository import CapsuleRepository, TemplateRepository
from hangar.core.capsules.rules import check_name, exec_env, sandbox_path
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.db.uow import checkpoint
from hangar.core.errors import DomainError, InvalidInput, InvalidState, NotFound
from hangar.core.fleet.gateway import Fleet
from hangar.core.pagination import Page, PageRequest
from hangar.core.quotas.service import QuotaService

# Capsules whose destroy must reach their host, or fail (pending and starting ones are left
# to their claim's holder, missing ones have nothing left there).
ASKS_HOST_TO_DESTROY = (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED, CapsuleStatus.ERROR)


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


class CapsuleService(CapsuleCreation, CapsuleNetworking):
    """What a team can do with its capsules (creates in creation.py, firewalls in networking.py)."""

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

    async def page_for_team(self, team_id: str, page: PageRequest) -> Page[Capsule]:
        """One page of the team's capsules, newest first."""
        return await self.capsules.page_live(team_id, page)

    async def running(self, team_id: str, capsule_id: str) -> Capsule:
        """A capsule that must be running for the operation asked."""
        capsule = await self.get(team_id, capsule_id)
        if capsule.status != CapsuleStatus.RUNNING:
            raise InvalidState(f"capsule is {capsule.status}, not running")
        return capsule

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
        """Destroy a capsule already loaded; its row's reservation is released with it.

        Before its host is asked, the destroy is noted on the row and committed: if the
        control plane dies between the host's destroy and the row's, the reconciler finds
        the note and finishes the destroy, instead of taking the vanished sandbox for a lost
        one (`missing`, still held against the quota). A host that fails keeps the note too
        (its call may have done the work); the reconciler retries it.
        """
        if capsule.host_id and capsule.status in ASKS_HOST_TO_DESTROY:
            self.fleet.agent(capsule.host_id)  # not connected: refused now, nothing noted
            capsule.destroying_since = utcnow()
            await checkpoint(self.session)
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
        capsule.status = move(capsule.status, CapsuleStatus.STOPPED)
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
        self,
        team_id: str,
        capsule_id: str,
        argv: list[str],
        timeout_sec: int,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecOutcome:
        """Run a command to completion; it is killed when the timeout passes.

        `env` is added to the sandbox user's environment; `cwd` (relative ones from the home
        directory) defaults to the home directory.
        """
        if not 1 <= timeout_sec <= self.settings.max_exec_timeout_sec:
            raise InvalidInput(
                f"timeout_sec must be between 1 and {self.settings.max_exec_timeout_sec}"
            )
        request = ExecRequest(
            argv=argv,
            env=exec_env(env or {}),
            cwd=sandbox_path(cwd) if cwd else None,
            timeout=timeout_sec,
        )
        capsule = await self.running(team_id, capsule_id)
        async with agent_call():
            r = await self.fleet.agent(capsule.host_id).exec(capsule.id, request)
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
        capsule.status = move(capsule.status, CapsuleStatus.PAUSED)
        self._event("capsule.paused", capsule)
        await self.session.flush()

    async def resume(self, team_id: str, capsule_id: str) -> Capsule:
        """Thaw a paused capsule."""
        capsule = await self.get(team_id, capsule_id)
        if capsule.status != CapsuleStatus.PAUSED:
            raise InvalidState(f"capsule is {capsule.status}, not paused")
        async with agent_call():
            await self.fleet.agent(capsule.host_id).resume(capsule.id)
        capsule.status = move(capsule.status, CapsuleStatus.RUNNING)
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
