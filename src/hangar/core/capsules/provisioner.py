"""Starting queued (`pending`) capsules once a host can take them, in the background.

Several control-plane replicas may share one database, so a start is a claim: one conditional
UPDATE (pending -> starting, with the chosen host) decides which replica asks a host, and
every later write is conditional on that claim still standing. Failed starts are counted in
the row, so the attempt limit holds across replicas and restarts; a claim whose replica died
is recovered once it is older than the claim timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto.client import AgentError
from hangar.agentproto.models import Sandbox
from hangar.core.capsules.launch import record_running, start_sandbox
from hangar.core.capsules.lifecycle import moving
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.errors import DomainError, Unavailable
from hangar.core.fleet.gateway import AgentHandle, Fleet
from hangar.core.hosts.repository import HostRepository

log = structlog.get_logger("hangar.capsules.provisioner")

# A snapshot still `creating` this long after it began was interrupted (the agent's own
# snapshot call gives up after 15 minutes).
STALE_SNAPSHOT = timedelta(minutes=20)
# A claim (`starting`) this old lost its replica: a start that builds a base template takes
# minutes, so this must be well above the longest start.
CLAIM_TIMEOUT = timedelta(minutes=20)
REASON_LIMIT = 500


class Provisioner:
    """Each tick starts an attempt for every pending capsule that has none running here.

    Attempts run as tasks because a start can take minutes (a base template is built on a
    host's first use) and must not hold up the reconciler's other jobs.
    """

    def __init__(
        self,
        db: Database,
        fleet: Fleet,
        settings: CapsuleSettings,
        *,
        claim_timeout: timedelta = CLAIM_TIMEOUT,
    ) -> None:
        self.db = db
        self.fleet = fleet
        self.settings = settings
        self.claim_timeout = claim_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def tick(self) -> None:
        """Start attempts for pending capsules, recover stale claims, fail stale snapshots."""
        self._tasks = {k: t for k, t in self._tasks.items() if not t.done()}
        async with self.db.session() as session:
            pending = [c.id for c in await CapsuleRepository(session).pending()]
            stale_claims = list(
                await session.scalars(
                    select(Capsule.id).where(
                        Capsule.status == CapsuleStatus.STARTING,
                        Capsule.claimed_at < utcnow() - self.claim_timeout,
                    )
                )
            )
            # Looked for before any write, so an idle tick never takes SQLite's write lock.
            stale = (
                await session.execute(
                    select(Template.id, Template.host_id, Template.host_template).where(
                        Template.status == SnapshotStatus.CREATING,
                        Template.created_at < utcnow() - STALE_SNAPSHOT,
                    )
                )
            ).all()
            await session.rollback()  # no read transaction held across the agent calls
            cleared = [t.id for t in stale if await self._clear_stale(session, *t)]
            if cleared:
                await session.execute(
                    update(Template)
                    .where(Template.id.in_(cleared), Template.status == SnapshotStatus.CREATING)
                    .values(status=SnapshotStatus.ERROR, status_reason="snapshot was interrupted")
                    .execution_options(synchronize_session=False)
                )
                await checkpoint(session)
        for capsule_id in pending:
            if capsule_id not in self._tasks:
                self._tasks[capsule_id] = asyncio.create_task(self._attempt(capsule_id))
        for capsule_id in stale_claims:
            if capsule_id not in self._tasks:  # our own start still under way is not stale
                self._tasks[capsule_id] = asyncio.create_task(self._attempt(capsule_id, True))

    async def _clear_stale(
        self, session: AsyncSession, template_id: str, host_id: str, host_template: str
    ) -> bool:
        """Delete an interrupted snapshot's partial files; False leaves it for a later tick.

        Only the replica its host is connected to can ask; a deleted host took the files
        with it. Until then it stays `creating` (and counts toward the team's quota).
        """
        handle = self.fleet.handle(host_id)
        if handle is None:
            gone = await HostRepository(session).get(host_id) is None
            await session.rollback()
            return gone
        try:
            await handle.client.delete_template(host_template)
        except AgentError as exc:
            log.warning("snapshot.stale_cleanup_failed", snapshot_id=template_id, error=exc.message)
            return False
        return True

    async def drain(self) -> None:
        """Wait for the attempts under way (tests and shutdown)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _attempt(self, capsule_id: str, recover: bool = False) -> None:
        try:
            await (self._recover(capsule_id) if recover else self._start(capsule_id))
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
                    await self._give_up_queued(session, capsule, "its snapshot no longer exists")
                    return
                host_id, host_template = snapshot.host_id, snapshot.host_template
            try:
                handle = await self.fleet.place(
                    session, capsule.team_id, capsule.vcpus, capsule.memory_mb, host_id=host_id
                )
            except Unavailable as exc:
                # Waiting for capacity is not a failure: it stays queued.
                await self._waiting(session, capsule, f"waiting for a host: {exc.message}")
                return
            # The claim: committed before the host is asked (so the host's sandbox is never an
            # orphan), and only one replica's UPDATE finds the row still pending. `place` holds
            # the hosts in the reservation ledger until this commit, so no other claim or
            # create counts the same room.
            claimed = await CapsuleRepository(session).claim(
                capsule_id, handle.host_id, handle.host_ip
            )
            await checkpoint(session)
            if not claimed:
                return  # another replica (or a destroy) got there first
            await session.refresh(capsule)  # the row as claimed (firewall, disk, name)
        try:
            sandbox = await start_sandbox(handle, capsule, host_template)
        except DomainError as exc:
            await self._failed(capsule_id, handle.host_id, exc.message)
            return
        await self._started(capsule_id, handle, sandbox)

    async def _waiting(self, session: AsyncSession, capsule: Capsule, reason: str) -> None:
        reason = reason[:REASON_LIMIT]
        if capsule.status_reason == reason:
            return  # nothing new: an idle queue does not write every tick
        await session.execute(
            update(Capsule)
            .where(Capsule.id == capsule.id, Capsule.status == CapsuleStatus.PENDING)
            .values(status_reason=reason)
            .execution_options(synchronize_session=False)
        )
        await checkpoint(session)

    async def _give_up_queued(self, session: AsyncSession, capsule: Capsule, reason: str) -> None:
        log.warning("capsule.provision_failed", capsule_id=capsule.id, error=reason)
        await CapsuleRepository(session).give_up_queued(capsule.id, f"could not start: {reason}")
        await checkpoint(session)

    async def _started(self, capsule_id: str, handle: AgentHandle, sandbox: Sandbox) -> None:
        """Finish our claim: running, unless the claim no longer stands (then undo the start)."""
        async with self.db.session() as session:
            if not await record_running(session, capsule_id, handle, sandbox):
                # Even an UPDATE that matched nothing holds SQLite's write lock: end it
                # before the agent is asked anything.
                await session.rollback()
                current = await session.get(Capsule, capsule_id)
                kept = (
                    current is not None
                    and current.host_id == handle.host_id
                    and current.status in (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED)
                )
                await session.rollback()
                if not kept:  # destroyed, or sent back to the queue meanwhile
                    with contextlib.suppress(AgentError):
                        await handle.client.destroy_sandbox(capsule_id)
                return
            await checkpoint(session)
        log.info("capsule.provisioned", capsule_id=capsule_id, host_id=handle.host_id)

    async def _failed(self, capsule_id: str, host_id: str, reason: str) -> None:
        """Our claimed start failed: back to the queue, or `error` once out of attempts."""
        log.warning("capsule.provision_failed", capsule_id=capsule_id, error=reason)
        async with self.db.session() as session:
            capsule = await session.get(Capsule, capsule_id)
            if capsule is None:
                return
            # Only the claim's holder changes start_attempts, so this read is stable.
            failures = capsule.start_attempts + 1
            give_up = failures >= self.settings.provision_max_attempts
            target = CapsuleStatus.ERROR if give_up else CapsuleStatus.PENDING
            await session.execute(
                update(Capsule)
                .where(
                    Capsule.id == capsule_id,
                    moving([CapsuleStatus.STARTING], target),
                    Capsule.host_id == host_id,
                )
                .values(
                    status=target,
                    start_attempts=failures,
                    status_reason=(
                        f"could not start after {failures} attempt(s): {reason}"
                        if give_up
                        else f"start failed ({failures}), retrying: {reason}"
                    )[:REASON_LIMIT],
                    # Back in the queue it reserves no host's room; an error keeps its host.
                    host_id=host_id if give_up else "",
                    host_ip=capsule.host_ip if give_up else "",
                    claimed_at=None,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            await checkpoint(session)

    async def _recover(self, capsule_id: str) -> None:
        """A claim older than the timeout: running if its host has the sandbox, else queued.

        Only the replica its host is connected to can ask; a host connected nowhere goes
        down in time, and taking it down sends its claimed capsules back to the queue.
        """
        cutoff = utcnow() - self.claim_timeout
        async with self.db.session() as session:
            capsule = await session.get(Capsule, capsule_id)
            if (
                capsule is None
                or capsule.status != CapsuleStatus.STARTING
                or capsule.claimed_at is None
                or capsule.claimed_at >= cutoff
            ):
                return
            host_id = capsule.host_id
            handle = self.fleet.handle(host_id)
            sandbox: Sandbox | None = None
            if handle is not None:
                try:
                    sandbox = next(
                        (
                            s
                            for s in await handle.client.list_sandboxes()
                            if s.sandbox_id == capsule_id
                        ),
                        None,
                    )
                except AgentError:
                    return  # try again next tick
            elif await HostRepository(session).get(host_id) is not None:
                return  # another replica's host, or one about to be taken down
            if handle is not None and sandbox is not None and sandbox.status != "stopped":
                if await record_running(
                    session, capsule_id, handle, sandbox, claimed_before=cutoff
                ):
                    await checkpoint(session)
                    log.warning("capsule.claim_recovered", capsule_id=capsule_id, running=True)
                return
            if handle is not None and sandbox is not None:
                with contextlib.suppress(AgentError):
                    await handle.client.destroy_sandbox(capsule_id)
            requeued = await CapsuleRepository(session).requeue(
                capsule_id,
                "waiting for a host: an interrupted start is retried",
                Capsule.host_id == host_id,
                Capsule.claimed_at < cutoff,
            )
            await checkpoint(session)
            if requeued:
                log.warning("capsule.claim_recovered", capsule_id=capsule_id, running=False)


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
