"""Host state changes that touch capsules: a host going away, and one coming back."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules import lifecycle as capsule_lifecycle
from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.clock import utcnow
from hangar.core.events.outbox import record
from hangar.core.hosts.lifecycle import move, predecessors
from hangar.core.hosts.models import Host, HostStatus

# Statuses a host can be reached in; placement further needs ONLINE.
UP = (HostStatus.ONLINE, HostStatus.DRAINING)
DOWN = (HostStatus.UNREACHABLE, HostStatus.OFFLINE)
# Capsules that exist on a host's agent and so vanish with it.
ON_HOST = (CapsuleStatus.RUNNING, CapsuleStatus.PAUSED)
REASON_LIMIT = 500


def host_event(session: AsyncSession, type_: str, host: Host, **extra: str) -> None:
    """Record host.up/host.down; BYOC hosts' events go to their team."""
    payload = {"host_id": host.id, "type": host.type, "status": host.status, **extra}
    record(session, type_, team_id=host.team_id, payload=payload)


def up_status(host: Host) -> HostStatus:
    """The status of a reachable host: draining if an admin asked, else online."""
    return HostStatus.DRAINING if host.draining else HostStatus.ONLINE


async def mark_down(
    session: AsyncSession,
    host: Host,
    status: HostStatus,
    reason: str,
    *,
    silent_before: datetime | None = None,
) -> list[str] | None:
    """Take an up host down; its capsules become `missing` in the same transaction.

    Capsules a provisioner had claimed on it (`starting`) go back to `pending` instead.

    Conditional on the host still being up (and, with `silent_before`, still silent), so of
    two reconcilers or replicas only one records the transition, and a heartbeat committed
    since the host was read is never overwritten. Returns the capsules marked missing, or
    None when nothing changed.
    """
    assert status in DOWN
    now = utcnow()
    # predecessors(any DOWN status) is UP: only a reachable host goes down.
    where = [Host.id == host.id, Host.status.in_(sorted(predecessors(status)))]
    if silent_before is not None:
        where.append((Host.last_heartbeat_at < silent_before) | Host.last_heartbeat_at.is_(None))
    changed = await session.execute(
        update(Host)
        .where(*where)
        .values(status=status, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(changed, CursorResult)
    if changed.rowcount != 1:
        return None
    await session.refresh(host)
    why = f"its host is {status}: {reason}"[:REASON_LIMIT]
    result = await session.execute(
        update(Capsule)
        .where(
            Capsule.host_id == host.id,
            capsule_lifecycle.moving(ON_HOST, CapsuleStatus.MISSING),
        )
        .values(status=CapsuleStatus.MISSING, status_reason=why, updated_at=now)
        .returning(Capsule.id)
        .execution_options(synchronize_session=False)
    )
    missing = list(result.scalars().all())
    # A provisioner's claim on this host cannot finish: the capsule goes back to the queue
    # (the claimant's own conditional writes then find nothing to change).
    await session.execute(
        update(Capsule)
        .where(
            Capsule.host_id == host.id,
            capsule_lifecycle.moving([CapsuleStatus.STARTING], CapsuleStatus.PENDING),
        )
        .values(
            status=CapsuleStatus.PENDING,
            status_reason=f"waiting for a host: {why}"[:REASON_LIMIT],
            host_id="",
            host_ip="",
            claimed_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    host_event(session, "host.down", host, reason=reason[:REASON_LIMIT])
    return missing


def mark_up(session: AsyncSession, host: Host) -> bool:
    """Record proof of life; a pending or down host comes up (host.up). True if it changed."""
    now = utcnow()
    host.last_heartbeat_at = now
    if host.status in UP:
        return False
    host.status = move(host.status, up_status(host))
    host.updated_at = now
    host_event(session, "host.up", host)
    return True


def stale(host: Host, every_seconds: float) -> bool:
    """Whether a polled host's last_heartbeat_at is old enough to be worth writing again."""
    if host.last_heartbeat_at is None:
        return True
    return utcnow() - host.last_heartbeat_at >= timedelta(seconds=every_seconds)
