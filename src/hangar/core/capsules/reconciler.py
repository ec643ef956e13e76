"""Background work that keeps capsule rows true to what the hosts report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta

import structlog
from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentError
from hangar.agentproto.models import Sandbox
from hangar.core import correlation
from hangar.core.capsules.launch import capsule_event
from hangar.core.capsules.lifecycle import move
from hangar.core.capsules.models import Capsule, CapsuleStatus, UsageSample
from hangar.core.capsules.provisioner import provision_pending
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.capsules.service import CapsuleService
from hangar.core.capsules.teardown import sweep_deleted_teams
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings, HostSettings
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.errors import DomainError
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.hosts.liveness import UP, mark_down, mark_up, stale
from hangar.core.hosts.models import HostStatus
from hangar.core.hosts.repository import HostRepository

log = structlog.get_logger("hangar.capsules.reconciler")

# A destroy noted this long ago is finished here: recorded done if its host no longer has
# the sandbox, else asked again. One in flight takes seconds; one older was interrupted (its
# replica died) or its host failed.
DESTROY_GRACE = timedelta(seconds=30)


class CapsuleReconciler:
    """Auto-pause, host state sync and usage sampling, on a timer."""

    def __init__(
        self,
        db: Database,
        fleet: Fleet,
        settings: CapsuleSettings,
        hosts: HostSettings | None = None,
    ) -> None:
        self.db = db
        self.fleet = fleet
        self.settings = settings
        self.hosts = hosts or HostSettings()
        self._last_usage = 0.0

    async def run_forever(self) -> None:
        """Tick until cancelled; a failing tick is logged and retried next time."""
        while True:
            # Each tick is a job of its own: its logs, events and agent calls share one id.
            with correlation.bound():
                try:
                    await self.tick()
                except Exception:
                    log.exception("reconcile.failed")
            await asyncio.sleep(self.settings.reconcile_seconds)

    async def tick(self) -> None:
        """One pass of every job."""
        await self.auto_pause()
        await self.sync_hosts()
        await sweep_deleted_teams(self.db, self.fleet, self.settings)
        await provision_pending(self.db, self.fleet, self.settings)
        if time.monotonic() - self._last_usage >= self.settings.usage_sample_seconds:
            self._last_usage = time.monotonic()
            await self.sample_usage()

    async def auto_pause(self) -> None:
        """Pause running capsules idle longer than their timeout."""
        now = utcnow()
        async with self.db.session() as session:
            capsules = CapsuleService(session, self.fleet, self.settings)
            for capsule in await capsules.capsules.all_live():
                if (
                    capsule.status != CapsuleStatus.RUNNING
                    or capsule.timeout_sec <= 0
                    or capsule.last_active_at is None
                    or capsule.last_active_at + timedelta(seconds=capsule.timeout_sec) > now
                ):
                    continue
                try:
                    await capsules.pause_row(capsule)
                    await checkpoint(session)
                    log.info("capsule.auto_paused", capsule_id=capsule.id)
                except DomainError as exc:
                    await session.rollback()
                    log.warning(
                        "capsule.auto_pause_failed", capsule_id=capsule.id, error=exc.message
                    )

    async def sync_hosts(self) -> None:
        """Make rows match each connected host's sandboxes; destroy old orphans.

        A successful poll is proof of life (the host row comes back up, which is how configured
        agents get their heartbeats); a failed poll takes a configured agent's host down at
        once (registered hosts go down when their heartbeats stop, in HeartbeatReconciler).
        """
        for handle in self.fleet.hosts():
            polled_at = utcnow()
            try:
                listed = await asyncio.wait_for(
                    handle.client.list_sandboxes(), self.hosts.poll_timeout_seconds
                )
            except (AgentError, TimeoutError) as exc:
                if handle.static:
                    why = exc.message if isinstance(exc, AgentError) else "no answer in time"
                    await self._host_down(handle.host_id, why)
                continue  # its capsules are left to the host's state until it is seen again
            if handle.static:  # registered agents say so when they reconnect
                await self._note_health(handle)
            reported = {s.sandbox_id: s for s in listed}
            synced = await self._sync_host(handle.host_id, reported, polled_at)
            if synced is None:
                continue  # no host row (deleted): its sandboxes are not ours to judge
            known, undestroyed = synced
            for capsule_id in undestroyed:  # a destroy that did not reach it: again
                log.warning("capsule.destroy_retried", capsule_id=capsule_id)
                with contextlib.suppress(AgentError):
                    await handle.client.destroy_sandbox(capsule_id)
            grace = time.time() - self.settings.orphan_grace_seconds
            for sandbox_id, sandbox in reported.items():
                if sandbox_id not in known and sandbox.started_at < grace:
                    log.warning("capsule.orphan_destroyed", sandbox_id=sandbox_id)
                    with contextlib.suppress(AgentError):
                        await handle.client.destroy_sandbox(sandbox_id)

    async def _note_health(self, handle: AgentHandle) -> None:
        """Refresh what a configured agent lacks, so installing a package heals its host."""
        try:
            info = await asyncio.wait_for(handle.client.info(), self.hosts.poll_timeout_seconds)
        except (AgentError, TimeoutError):
            return  # its listing answered; the next poll tries again
        before = [p.program for p in handle.missing]
        handle.note(info)
        after = [p.program for p in handle.missing]
        if after != before:
            log.warning("host.programs", host_id=handle.host_id, missing=after)

    async def _sync_host(
        self, host_id: str, reported: dict[str, Sandbox], polled_at: datetime
    ) -> tuple[set[str], list[str]] | None:
        """Bring the host row up and its capsule rows in line.

        Returns the capsule ids the host has, and those whose noted destroy the host still
        has not done (to be asked again, after this commit).
        """
        async with self.db.session() as session:
            host = await HostRepository(session).get(host_id)
            if host is None:
                return None
            alive_again = host.status not in UP
            if alive_again or stale(host, self.hosts.heartbeat_timeout_seconds / 4):
                mark_up(session, host)
            if alive_again:
                log.info("host.up", host_id=host_id)
            known: set[str] = set()
            undestroyed: list[str] = []
            for capsule in await CapsuleRepository(session).all_live():
                if capsule.host_id != host_id:
                    continue
                known.add(capsule.id)
                if capsule.updated_at >= polled_at:
                    continue  # created, paused or resumed since the poll: newer than it
                if capsule.destroying_since is not None:
                    # Left to the destroy that noted it while that may still be under way.
                    if capsule.destroying_since >= polled_at - DESTROY_GRACE:
                        continue
                    if capsule.id in reported:
                        undestroyed.append(capsule.id)
                    else:
                        await _finish_destroy(session, capsule)
                    continue
                target = _reported_state(capsule.status, reported.get(capsule.id))
                if target is None or target == (capsule.status, capsule.status_reason):
                    continue
                # Only if the row is still as read: a destroy or a claim committed since the
                # read (PostgreSQL lets one in) is newer than this poll.
                await session.execute(
                    update(Capsule)
                    .where(Capsule.id == capsule.id, Capsule.status == capsule.status)
                    .values(
                        status=move(capsule.status, target[0]),
                        status_reason=target[1],
                        updated_at=utcnow(),
                    )
                    .execution_options(synchronize_session=False)
                )
            await checkpoint(session)
            return known, undestroyed

    async def _host_down(self, host_id: str, reason: str) -> None:
        """A configured agent stopped answering: its host goes unreachable (once)."""
        async with self.db.session() as session:
            host = await HostRepository(session).get(host_id)
            if host is None:
                return
            missing = await mark_down(session, host, HostStatus.UNREACHABLE, reason)
            await checkpoint(session)
        if missing is not None:
            log.warning("host.down", host_id=host_id, capsules_missing=len(missing))

    async def sample_usage(self) -> None:
        """Record each team's running capsules and reservations."""
        now = utcnow()
        async with self.db.session() as session:
            repo = CapsuleRepository(session)
            teams = {c.team_id for c in await repo.all_live()}
            reserved = {t: (n, v, m) for t, n, v, m in await repo.team_reservations()}
            for team_id in teams | set(reserved):
                n, v, m = reserved.get(team_id, (0, 0, 0))
                session.add(
                    UsageSample(team_id=team_id, sampled_at=now, running=n, vcpus=v, memory_mb=m)
                )
            await checkpoint(session)


async def _finish_destroy(session: AsyncSession, capsule: Capsule) -> None:
    """A noted destroy whose sandbox is gone from its host: record it done (its release).

    Conditional on the row still being as read, so a destroy that committed meanwhile is
    not recorded twice.
    """
    now = utcnow()
    result = await session.execute(
        update(Capsule)
        .where(
            Capsule.id == capsule.id,
            Capsule.status == capsule.status,
            Capsule.destroying_since.is_not(None),
        )
        .values(
            status=move(capsule.status, CapsuleStatus.STOPPED), destroyed_at=now, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount == 1:
        done = await session.get(Capsule, capsule.id, populate_existing=True)
        assert done is not None
        capsule_event(session, "capsule.destroyed", done)
        log.warning("capsule.destroy_finished", capsule_id=capsule.id)


def _reported_state(
    status: str, sandbox: Sandbox | None
) -> tuple[CapsuleStatus, str | None] | None:
    """The status and reason a capsule's row should have by its host's report, if any."""
    if sandbox is None:
        if status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED, CapsuleStatus.MISSING):
            return CapsuleStatus.MISSING, "the host no longer has this capsule"
        return None
    if sandbox.status == "stopped":
        return CapsuleStatus.ERROR, "the capsule's processes exited"
    if status in (CapsuleStatus.MISSING, CapsuleStatus.ERROR) or (
        status != sandbox.status and status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED)
    ):
        return CapsuleStatus(sandbox.status), None
    return None
