"""Core host objects to Wrenn wire models."""

from __future__ import annotations

from hangar.core.hosts.models import Host as CoreHost
from hangar.core.hosts.service import HostCredentials
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import schemas as w


def host(h: CoreHost) -> w.Host:
    """A Host."""
    return w.Host(
        id=ids.encode(ids.HOST, h.id),
        type=h.type,
        team_id=ids.encode(ids.TEAM, h.team_id) if h.team_id else None,
        provider=h.provider,
        availability_zone=h.availability_zone,
        arch=h.arch,
        cpu_cores=h.cpu_cores,
        memory_mb=h.memory_mb,
        disk_gb=h.disk_gb,
        address=h.address,
        status=h.status,
        last_heartbeat_at=h.last_heartbeat_at,
        # The spec's created_by is a non-null string; a creator's account removed for good
        # (or a host made by an API key) leaves it empty.
        created_by=ids.encode(ids.USER, h.created_by) if h.created_by else "",
        created_at=h.created_at,
        updated_at=h.updated_at,
    )


def credentials(c: HostCredentials) -> w.HostCredentials:
    """A RegisterHostResponse or RefreshHostTokenResponse."""
    return w.HostCredentials(host=host(c.host), token=c.token, refresh_token=c.refresh_token)
