"""Operator actions on hosts and placement, run from the server's own CLI. Never commits.

The Wrenn API has no drain or pinning endpoint, so these are reached through `hangar host`,
which only whoever runs the control plane (and so holds its database) can use.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.errors import NotFound
from hangar.core.hosts.lifecycle import move
from hangar.core.hosts.liveness import UP, up_status
from hangar.core.hosts.models import Host
from hangar.core.hosts.repository import HostRepository
from hangar.core.identity.repository import TeamRepository


async def set_draining(session: AsyncSession, host_id: str, draining: bool) -> Host:
    """Drain a host (no new capsules; running ones stay) or put it back in service."""
    host = await HostRepository(session).get(host_id)
    if host is None:
        raise NotFound("host not found")
    host.draining = draining
    if host.status in UP:
        host.status = move(host.status, up_status(host))
    host.updated_at = utcnow()
    await session.flush()
    return host


async def set_byoc_only(session: AsyncSession, team_id: str, byoc_only: bool) -> None:
    """Pin a team's capsules to its own BYOC hosts, or let them use regular hosts again."""
    if await TeamRepository(session).get(team_id) is None:
        raise NotFound("team not found")
    await HostRepository(session).set_byoc_only(team_id, byoc_only)
