"""Marks hosts whose heartbeats stopped as unreachable, and says so with `host.down`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from hangar.core.clock import utcnow
from hangar.core.config import HostSettings
from hangar.core.db import Database
from hangar.core.hosts.repository import HostRepository
from hangar.core.hosts.service import host_event

log = structlog.get_logger("hangar.hosts.reconciler")


class HeartbeatReconciler:
    """Online hosts silent for longer than the timeout become `unreachable`.

    A heartbeat brings such a host back (`host.up`, in HostService.heartbeat).
    """

    def __init__(self, db: Database, settings: HostSettings) -> None:
        self.db = db
        self.settings = settings

    async def run_forever(self) -> None:
        """Tick until cancelled; a failing tick is logged and retried next time."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("hosts.reconcile_failed")
            await asyncio.sleep(self.settings.reconcile_seconds)

    async def tick(self) -> list[str]:
        """One pass; the ids of the hosts it marked unreachable."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.heartbeat_timeout_seconds)
        down: list[str] = []
        async with self.db.session() as session:
            repo = HostRepository(session)
            for host in await repo.silent_since(cutoff):
                # Conditional, so a heartbeat committed since the read is never overwritten.
                if not await repo.mark_unreachable(host.id, cutoff, now):
                    continue
                await session.refresh(host)
                seen = host.last_heartbeat_at.isoformat() if host.last_heartbeat_at else "never"
                host_event(session, "host.down", host, reason=f"no heartbeat since {seen}")
                down.append(host.id)
            await session.commit()
        for host_id in down:
            log.warning("host.down", host_id=host_id)
        return down
