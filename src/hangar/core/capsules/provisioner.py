"""Starting queued (`pending`) capsules once a host can take them, in the background."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from datetime import timedelta

import structlog
from sqlalchemy import CursorResult, select, update

from hangar.agentproto.client import AgentError
from hangar.agentproto.models import Sandbox
from hangar.core.capsules.launch import capsule_event, start_sandbox
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.errors import DomainError, Unavailable
from hangar.core.fleet.gateway import AgentHandle, Fleet

log = structlog.get_logger("hangar.capsules.provisioner")

# A snapshot still `creating` this long after it began was interrupted (the agent's own
# snapshot call gives up after 15 minutes).
STALE_SNAPSHOT = timedelta(minutes=20)


class Provisioner:
    """Each tick starts an attempt for every pending capsule that has none running.

    Attempts run as tasks because a start can take minutes (a base template is built on a
    host's first use) and must not hold up the reconciler's other jobs.
    """

    def __init__(self, db: Database, fleet: Fleet, settings: CapsuleSettings) -> None:
        self.db = db
        self.fleet = fleet
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}

    async def tick(self) -> None:
        """Start attempts for pending capsules; fail snapshots left `creating` by a crash."""
        self._tasks = {k: t for k, t in self._tasks.items() if not t.done()}
        async with self.db.session() as session:
            pending = [c.id for c in await CapsuleRepository(session).pending()]
            # Looked for before any write, so an idle tick never takes SQLite's write lock.
            stale = list(
                await session.scalars(
                    select(Template.id).where(
                        Template.status == SnapshotStatus.CREATING,
                        Template.created_at < utcnow() - STALE_SNAPSHOT,
                    )
                )
            )
            if stale:
                await session.execute(
                    update(Template)
                    .where(Template.id.in_(stale), Template.status == SnapshotStatus.CREATING)
                    .values(status=SnapshotStatus.ERROR, status_reason="snapshot was interrupted")
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
        for capsule_id in pending:
            if capsule_id not in self._tasks:
                self._tasks[capsule_id] = asyncio.create_task(self._attempt(capsule_id))

    async def drain(self) -> None:
        """Wait for the attempts under way (tests and shutdown)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _attempt(self, capsule_id: str) -> None:
        try:
            await self._start(capsule_id)
        except Exception:
            log.exception("capsule.provision_crashed", capsule_id=capsule_id)

    async def _start(self, capsule_id: str) -> None:
        async with self.db.session() as session:
            capsule = await session.get(Capsule, capsule_id)
            if capsule is None or capsule.status != CapsuleStatus.PENDING:
                return
            host_id, host_template = None, capsule.template
            if capsule.source_snapshot_id is not None:
                snapshot = await session.get(Template, capsule.source_snapshot_id)
                if snapshot is None:
                    await self._fail(capsule_id, "its snapshot no longer exists", final=True)
                    return
                host_id, host_template = snapshot.host_id, snapshot.host_template
            try:
                handle = await self.fleet.place(
                    session, capsule.team_id, capsule.vcpus, capsule.memory_mb, host_id=host_id
                )
            except Unavailable as exc:
                # Waiting for capacity is not a failure: it stays queued.
                capsule.status_reason = f"waiting for a host: {exc.message}"[:500]
                await session.commit()
                return
            # Committed before the host is asked, so the host's sandbox is never an orphan.
            capsule.host_id, capsule.host_ip = handle.host_id, handle.host_ip
            capsule.status_reason = "starting"
            await session.commit()
        try:
            sandbox = await start_sandbox(handle, capsule, host_template)
        except DomainError as exc:
            await self._fail(capsule_id, exc.message)
            return
        await self._started(capsule_id, handle, sandbox)

    async def _started(self, capsule_id: str, handle: AgentHandle, sandbox: Sandbox) -> None:
        now = utcnow()
        async with self.db.session() as session:
            # Conditional, so a capsule destroyed meanwhile is not brought back to life.
            result = await session.execute(
                update(Capsule)
                .where(Capsule.id == capsule_id, Capsule.status == CapsuleStatus.PENDING)
                .values(
                    status=CapsuleStatus.RUNNING,
                    status_reason=None,
                    host_id=handle.host_id,
                    host_ip=handle.host_ip,
                    guest_ip=sandbox.guest_ip,
                    ipv6=sandbox.ipv6,
                    started_at=now,
                    last_active_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            assert isinstance(result, CursorResult)
            if result.rowcount != 1:
                with contextlib.suppress(AgentError):
                    await handle.client.destroy_sandbox(capsule_id)
                return
            capsule = await session.get(Capsule, capsule_id)
            assert capsule is not None
            capsule_event(session, "capsule.running", capsule)
            await session.commit()
        self._failures.pop(capsule_id, None)
        log.info("capsule.provisioned", capsule_id=capsule_id, host_id=handle.host_id)

    async def _fail(self, capsule_id: str, reason: str, *, final: bool = False) -> None:
        failures = self._failures.get(capsule_id, 0) + 1
        self._failures[capsule_id] = failures
        give_up = final or failures >= self.settings.provision_max_attempts
        log.warning("capsule.provision_failed", capsule_id=capsule_id, error=reason)
        async with self.db.session() as session:
            await session.execute(
                update(Capsule)
                .where(Capsule.id == capsule_id, Capsule.status == CapsuleStatus.PENDING)
                .values(
                    status=CapsuleStatus.ERROR if give_up else CapsuleStatus.PENDING,
                    status_reason=(
                        f"could not start after {failures} attempt(s): {reason}"
                        if give_up
                        else f"start failed ({failures}), retrying: {reason}"
                    )[:500],
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        if give_up:
            self._failures.pop(capsule_id, None)


_provisioners: weakref.WeakKeyDictionary[Database, Provisioner] = weakref.WeakKeyDictionary()


def provisioner_for(db: Database, fleet: Fleet, settings: CapsuleSettings) -> Provisioner:
    """The one provisioner of a control plane's database (made on first use)."""
    found = _provisioners.get(db)
    if found is None:
        found = _provisioners[db] = Provisioner(db, fleet, settings)
    return found


async def provision_pending(db: Database, fleet: Fleet, settings: CapsuleSettings) -> None:
    """One provisioner tick (called from the capsule reconciler's tick)."""
    await provisioner_for(db, fleet, settings).tick()
