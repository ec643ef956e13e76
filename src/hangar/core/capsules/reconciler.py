"""Background work that keeps capsule rows true to what the hosts report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import structlog

from hangar.agentproto.client import AgentError
from hangar.core.capsules.models import CapsuleStatus, UsageSample
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.capsules.service import CapsuleService
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.errors import DomainError
from hangar.core.events.outbox import record
from hangar.core.fleet.gateway import Fleet

log = structlog.get_logger("hangar.capsules.reconciler")


class CapsuleReconciler:
    """Auto-pause, host state sync and usage sampling, on a timer."""

    def __init__(self, db: Database, fleet: Fleet, settings: CapsuleSettings) -> None:
        self.db = db
        self.fleet = fleet
        self.settings = settings
        self._last_usage = 0.0
        self._host_up: dict[str, bool] = {}

    async def run_forever(self) -> None:
        """Tick until cancelled; a failing tick is logged and retried next time."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("reconcile.failed")
            await asyncio.sleep(self.settings.reconcile_seconds)

    async def tick(self) -> None:
        """One pass of every job."""
        await self.auto_pause()
        await self.sync_hosts()
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
                    await session.commit()
                    log.info("capsule.auto_paused", capsule_id=capsule.id)
                except DomainError as exc:
                    await session.rollback()
                    log.warning(
                        "capsule.auto_pause_failed", capsule_id=capsule.id, error=exc.message
                    )

    async def sync_hosts(self) -> None:
        """Make rows match each reachable host's sandboxes; destroy old orphans."""
        for handle in self.fleet.hosts():
            try:
                reported = {s.sandbox_id: s for s in await handle.client.list_sandboxes()}
            except AgentError as exc:
                await self._host_seen(handle.host_id, up=False, reason=exc.message)
                continue  # its capsules are left as they are until the host is seen again
            await self._host_seen(handle.host_id, up=True)
            async with self.db.session() as session:
                repo = CapsuleRepository(session)
                known: set[str] = set()
                for capsule in await repo.all_live():
                    if capsule.host_id != handle.host_id:
                        continue
                    known.add(capsule.id)
                    sandbox = reported.get(capsule.id)
                    if sandbox is None:
                        if capsule.status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED):
                            capsule.status = CapsuleStatus.MISSING
                            capsule.status_reason = "the host no longer has this capsule"
                    elif sandbox.status == "stopped":
                        capsule.status = CapsuleStatus.ERROR
                        capsule.status_reason = "the capsule's processes exited"
                    elif capsule.status in (CapsuleStatus.MISSING, CapsuleStatus.ERROR) or (
                        capsule.status != sandbox.status
                        and capsule.status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED)
                    ):
                        capsule.status = sandbox.status
                        capsule.status_reason = None
                await session.commit()
            grace = time.time() - self.settings.orphan_grace_seconds
            for sandbox_id, sandbox in reported.items():
                if sandbox_id not in known and sandbox.started_at < grace:
                    log.warning("capsule.orphan_destroyed", sandbox_id=sandbox_id)
                    with contextlib.suppress(AgentError):
                        await handle.client.destroy_sandbox(sandbox_id)

    async def _host_seen(self, host_id: str, *, up: bool, reason: str = "") -> None:
        """Emit host.up/host.down when reachability changes (first contact counts as up).

        Kept in memory per control-plane process until hosts have rows of their own; a
        restarted control plane reports its hosts up again on first contact.
        """
        if self._host_up.get(host_id) == up or (not up and host_id not in self._host_up):
            self._host_up.setdefault(host_id, up)
            return
        self._host_up[host_id] = up
        async with self.db.session() as session:
            payload = {"host_id": host_id} | ({} if up else {"reason": reason})
            record(session, "host.up" if up else "host.down", team_id=None, payload=payload)
            await session.commit()
        log.info("host.up" if up else "host.down", host_id=host_id)

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
            await session.commit()
