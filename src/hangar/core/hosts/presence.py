"""Which control-plane replica holds each host's uplink, recorded on the host row."""

from __future__ import annotations

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.hosts.models import Host

log = structlog.get_logger("hangar.core.hosts.presence")


async def claim(session: AsyncSession, host_id: str, replica: str) -> None:
    """Record that `replica` holds `host_id`'s uplink from now (a later connection wins)."""
    await session.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(uplink_replica=replica, uplink_since=utcnow())
        .execution_options(synchronize_session=False)
    )


async def release(session: AsyncSession, host_id: str, replica: str) -> None:
    """Forget `replica`'s uplink of `host_id`, unless another replica has taken it since."""
    await session.execute(
        update(Host)
        .where(Host.id == host_id, Host.uplink_replica == replica)
        .values(uplink_replica=None, uplink_since=None)
        .execution_options(synchronize_session=False)
    )


async def release_all(session: AsyncSession, replica: str) -> None:
    """Forget every uplink `replica` recorded (it starts afresh, so it holds none)."""
    await session.execute(
        update(Host)
        .where(Host.uplink_replica == replica)
        .values(uplink_replica=None, uplink_since=None)
        .execution_options(synchronize_session=False)
    )


async def owners(session: AsyncSession) -> dict[str, str]:
    """Host id -> the replica holding its uplink, for every host with one."""
    rows = await session.execute(
        select(Host.id, Host.uplink_replica).where(Host.uplink_replica.is_not(None))
    )
    return {host_id: replica for host_id, replica in rows if replica}


async def reconcile(session: AsyncSession, ours: set[str], replica: str) -> dict[str, str]:
    """Make the rows agree with the uplinks `replica` holds; every host's owner, after.

    A host whose row names nobody is claimed; one whose row names another replica is left to
    it (the agent dialled it later: our connection is on its way out). A host whose row
    names us but whose uplink is gone is released.
    """
    found = await owners(session)
    for host_id in ours - set(found):
        await session.execute(
            update(Host)
            .where(Host.id == host_id, Host.uplink_replica.is_(None))
            .values(uplink_replica=replica, uplink_since=utcnow())
            .execution_options(synchronize_session=False)
        )
        found[host_id] = replica
    for host_id, owner in list(found.items()):
        if owner == replica and host_id not in ours:
            await release(session, host_id, replica)
            del found[host_id]
    return found


async def connected(db: Database, host_id: str, replica: str | None) -> None:
    """The uplink of `host_id` came up on `replica` (None: relaying is off)."""
    if replica is None:
        return
    try:
        async with db.session() as session:
            await claim(session, host_id, replica)
            await checkpoint(session)
    except Exception:  # the uplink works here regardless; other replicas just can't relay
        log.exception("presence.claim_failed", host_id=host_id)


async def disconnected(db: Database, host_id: str, replica: str | None) -> None:
    """The uplink of `host_id` on `replica` went away."""
    if replica is None:
        return
    try:
        async with db.session() as session:
            await release(session, host_id, replica)
            await checkpoint(session)
    except Exception:  # the other replicas' relay calls fail until it reconnects somewhere
        log.exception("presence.release_failed", host_id=host_id)
