"""Reaching agents whose uplink ends on another control-plane replica, through that replica.

Each replica records on the host row the internal URL it is reached at while it holds a
host's uplink (hosts/presence.py). Every other replica calls such an agent with an ordinary
`AgentClient` addressed at the owner's relay (`/agent/v1/relay/<host id>`), which forwards
each call and stream into the uplink. The relay accepts short-lived JWTs from the platform
signer (every replica shares the signing keys) with audience `hangar:relay`, one host each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from hangar.agentproto.client import AgentClient
from hangar.core.db import Database
from hangar.core.db.uow import checkpoint
from hangar.core.hosts import presence
from hangar.core.security.jwt import TokenSigner

if TYPE_CHECKING:
    from hangar.core.fleet.gateway import Fleet

log = structlog.get_logger("hangar.core.fleet.relay")

RELAY_AUDIENCE = "hangar:relay"
RELAY_PREFIX = "/agent/v1/relay"
# A relay token is checked when each call or stream starts; a client is replaced (with a
# fresh token) well before its token expires.
TOKEN_TTL_SECONDS = 600
RENEW_AFTER_SECONDS = 240
# A replaced client may still carry a long call or download: it is closed only this late.
RETIRED_GRACE_SECONDS = 3600


def relay_url(owner: str, host_id: str) -> str:
    """Where `owner` relays calls to `host_id`'s agent."""
    return f"{owner.rstrip('/')}{RELAY_PREFIX}/{host_id}"


@dataclass
class _Remote:
    owner: str
    client: AgentClient
    made: float


class Relays:
    """Clients for the agents whose uplinks other replicas hold."""

    def __init__(self, replica_url: str, signer: TokenSigner) -> None:
        self.replica_url = replica_url.rstrip("/")
        self._signer = signer
        self._owners: dict[str, str] = {}
        self._clients: dict[str, _Remote] = {}
        self._retired: list[tuple[float, AgentClient]] = []

    def token(self, host_id: str) -> str:
        """A relay token for calls to `host_id`'s agent."""
        return self._signer.issue(RELAY_AUDIENCE, host_id, TOKEN_TTL_SECONDS)

    def note(self, host_id: str, owner: str | None) -> None:
        """`owner` holds `host_id`'s uplink (None: nobody does)."""
        owner = owner.rstrip("/") if owner else None
        if owner is None or owner == self.replica_url:
            self._owners.pop(host_id, None)
            self._retire(host_id)
        else:
            self._owners[host_id] = owner

    def replace(self, owners: Mapping[str, str]) -> None:
        """Every host's owner, as the database has them now."""
        for host_id in set(self._owners) - set(owners):
            self.note(host_id, None)
        for host_id, owner in owners.items():
            self.note(host_id, owner)

    def owner(self, host_id: str) -> str | None:
        """The other replica holding `host_id`'s uplink, if one does."""
        return self._owners.get(host_id)

    def client(self, host_id: str) -> AgentClient | None:
        """A client relaying to `host_id`'s agent, if another replica holds its uplink."""
        owner = self._owners.get(host_id)
        if owner is None:
            return None
        now = time.monotonic()
        remote = self._clients.get(host_id)
        if remote is not None and remote.owner == owner and now - remote.made < RENEW_AFTER_SECONDS:
            return remote.client
        self._retire(host_id)
        client = AgentClient(relay_url(owner, host_id), token=self.token(host_id))
        self._clients[host_id] = _Remote(owner, client, now)
        return client

    def _retire(self, host_id: str) -> None:
        remote = self._clients.pop(host_id, None)
        if remote is not None:
            self._retired.append((time.monotonic(), remote.client))

    async def close_retired(self, *, everything: bool = False) -> None:
        """Close replaced clients past their grace period (all of them, with `everything`)."""
        cutoff = time.monotonic() - RETIRED_GRACE_SECONDS
        keep: list[tuple[float, AgentClient]] = []
        for retired_at, client in self._retired:
            if everything or retired_at < cutoff:
                await client.aclose()
            else:
                keep.append((retired_at, client))
        self._retired = keep
        if everything:
            for remote in self._clients.values():
                await remote.client.aclose()
            self._clients.clear()


async def watch(db: Database, fleet: Fleet, interval: float) -> None:
    """Every `interval` seconds: record the uplinks held here, learn those held elsewhere.

    The uplink endpoint records a connection at once; this catches what it could not
    (a database outage, a replica that died holding uplinks).
    """
    while True:
        try:
            await refresh(db, fleet)
        except Exception:  # the next tick tries again; placement refreshes on its own too
            log.exception("relay.refresh_failed")
        await asyncio.sleep(interval)


async def refresh(db: Database, fleet: Fleet) -> None:
    """One pass of `watch`."""
    if fleet.relays is None:
        return
    async with db.session() as session:
        owners = await presence.reconcile(session, fleet.uplink_hosts(), fleet.relays.replica_url)
        await checkpoint(session)
    fleet.relays.replace(owners)
    await fleet.relays.close_retired()
