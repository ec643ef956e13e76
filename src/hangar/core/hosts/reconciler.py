"""Marks hosts whose heartbeats stopped as unreachable, and says so with `host.down`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from hangar.core import correlation
from hangar.core.clock import utcnow
from hangar.core.config import HostSettings
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.hosts.liveness import mark_down
from hangar.core.hosts.models import HostStatus
from hangar.core.hosts.repository import HostRepository

log = structlog.get_logger("hangar.hosts.reconciler")


class HeartbeatReconciler:
    """Online or draining hosts silent for longer than the timeout become `unreachable`.

    Their capsules become `missing` in the same transaction. A heartbeat (or a successful poll
    of a connected agent, in the capsule reconciler) brings the host back (`host.up`).
    """

    def __init__(self, db: Database, settings: HostSettings) -> None:
        self.db = db
        self.settings = settings

    async def run_forever(self) -> None:
        """Tick until cancelled; a failing tick is logged and retried next time."""
        while True:
            with correlation.bound():  # one id per tick, on its logs and `host.down` events
                try:
                    await self.tick()
                except Exception:
                    log.exception("hosts.reconcile_failed")
            await asyncio.sleep(self.settings.reconcile_seconds)

    async def tick(self) -> list[str]:
        """One pass; the ids of the hosts it marked unreachable."""
        cutoff = utcnow() - timedelta(seconds=self.settings.heartbeat_timeout_seconds)
        down: list[tuple[str, int]] = []
        async with self.db.session() as session:
            repo = HostRepository(session)
            for host in await repo.silent_since(cutoff):
                seen = host.last_heartbeat_at.isoformat() if host.last_heartbeat_at else "never"
                missing = await mark_down(
                    session,
                    host,
                    HostStatus.UNREACHABLE,
                    f"no heartbeat since {seen}",
                    silent_before=cutoff,
                )
                if missing is not None:
                    down.append((host.id, len(missing)))
            await checkpoint(session)
        for host_id, capsules in down:
            log.warning("host.down", host_id=host_id, capsules_missing=capsules)
        return [host_id for host_id, _ in down]
