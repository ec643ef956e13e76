"""A brief, in-process cache of API-key principals, dropped at once when a key goes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.events.bus import EventBus
from hangar.core.events.envelope import Event
from hangar.core.identity.principal import Principal
from hangar.core.identity.service import TEAM_DELETED

API_KEY_DELETED = "api_key.deleted"
DEFAULT_TTL_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    expires: float


class PrincipalCache:
    """Principals by key *hash* (never plaintext) for `ttl` seconds.

    Deleting a key or its team invalidates this process's entries at once (and again after
    the deleting transaction commits, so a request that read the row just before the commit
    cannot put it back). Other replicas hear of it through the committed `api_key.deleted`
    and `team.deleted` events (`forget_deleted`: the outbox relay feeds every replica's bus
    when NATS is configured); that arrives after the relay's poll, and without NATS (or if a
    replica's bus drops it) not at all, so `ttl` is what bounds their staleness and is why
    it is a few seconds at most.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL_SECONDS,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, key_hash: str) -> Principal | None:
        """The cached principal of a key hash, if still fresh."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._entries.pop(key_hash, None)
            return None
        return entry.principal

    def put(self, key_hash: str, principal: Principal) -> None:
        """Remember a principal; the oldest entry goes when full."""
        if self.ttl <= 0:
            return
        self._entries[key_hash] = _Entry(principal, self._clock() + self.ttl)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop_key(self, key_id: str) -> None:
        """Forget a deleted key."""
        self._drop(lambda p: p.api_key_id == key_id)

    def drop_team(self, team_id: str) -> None:
        """Forget every key of a deleted team."""
        self._drop(lambda p: p.team_id == team_id)

    def _drop(self, match: Callable[[Principal], bool]) -> None:
        for key_hash in [h for h, e in self._entries.items() if match(e.principal)]:
            self._entries.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._entries)


def drop_now_and_on_commit(session: AsyncSession, drop: Callable[[], None]) -> None:
    """Run `drop` now and once more when `session` commits."""
    drop()
    event.listen(session.sync_session, "after_commit", lambda _s: drop(), once=True)


def forget(cache: PrincipalCache, event: Event) -> None:
    """Drop what a committed deletion event (from any replica) names."""
    if event.type == API_KEY_DELETED:
        cache.drop_key(str(event.payload.get("api_key_id")))
    elif event.type == TEAM_DELETED:
        cache.drop_team(str(event.payload.get("team_id")))


async def forget_deleted(bus: EventBus, cache: PrincipalCache) -> None:
    """Apply every replica's key and team deletions to this replica's cache until the bus
    closes."""
    async with bus.subscribe() as queue:
        while True:
            try:
                event = await bus.next(queue, timeout=3600)
            except TimeoutError:
                continue
            if event is None:
                return
            forget(cache, event)
