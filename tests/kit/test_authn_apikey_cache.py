"""The API-key principal cache, through the real Wrenn app: brief, by hash, dropped at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import delete, select

from hangar.core.apikeys.cache import API_KEY_DELETED, PrincipalCache, forget_deleted
from hangar.core.apikeys.models import ApiKey
from hangar.core.db import Database
from hangar.core.events.bus import EventBus
from hangar.core.events.envelope import Event
from hangar.core.events.models import OutboxEvent
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.identity.service import TEAM_DELETED
from hangar.core.platform import Platform
from hangar.core.security.opaque import hash_secret
from hangar.faces.wrenn import ids
from support.live import LiveServer
from support.wrenn import Account, Wrenn


@pytest.fixture
async def db(server: LiveServer) -> AsyncIterator[Database]:
    """The live server's own database, opened beside it."""
    database = Database(server.settings.resolved_database_url())
    yield database
    await database.dispose()


def cache_of(server: LiveServer) -> PrincipalCache:
    assert server.app is not None
    platform: Platform = server.app.state.platform
    return platform.api_key_principals


def capsules(http: httpx.Client, key: str) -> httpx.Response:
    return http.get("/v1/capsules", headers={"X-API-Key": key})


def test_the_cache_holds_key_hashes_never_plaintext(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn, alice: Account
) -> None:
    created = wrenn.create_key(alice, "cached")
    assert capsules(http, created["key"]).status_code == 200
    cache = cache_of(server)
    cached = cache.get(hash_secret(created["key"]))
    assert cached is not None
    assert cached.api_key_id == ids.decode(ids.KEY, created["id"])
    assert cache.get(created["key"]) is None
    assert created["key"] not in repr(cache._entries)


async def test_a_cached_key_skips_the_database_for_its_ttl(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn, alice: Account, db: Database
) -> None:
    # A row removed behind the service's back is still honoured while cached: the cache
    # is real, which is what makes the next test's immediate refusal meaningful.
    created = wrenn.create_key(alice, "behind its back")
    assert capsules(http, created["key"]).status_code == 200
    async with db.session() as session:
        key_id = ids.decode(ids.KEY, created["id"])
        await session.execute(delete(ApiKey).where(ApiKey.id == key_id))
        await session.commit()
    assert capsules(http, created["key"]).status_code == 200
    cache_of(server).drop_key(key_id)
    assert capsules(http, created["key"]).status_code == 401


def test_a_deleted_key_is_refused_on_the_very_next_request(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn, alice: Account
) -> None:
    created = wrenn.create_key(alice, "doomed")
    assert capsules(http, created["key"]).status_code == 200
    assert cache_of(server).get(hash_secret(created["key"])) is not None

    resp = http.delete(f"/v1/api-keys/{created['id']}", headers=alice.headers)
    assert resp.status_code == 204, resp.text

    refused = capsules(http, created["key"])
    assert refused.status_code == 401
    assert cache_of(server).get(hash_secret(created["key"])) is None


def test_a_deleted_teams_keys_are_refused_on_the_very_next_request(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn, alice: Account
) -> None:
    owner = wrenn.new_team_as(alice, "Short lived")
    created = wrenn.create_key(owner, "team key")
    other = wrenn.create_key(alice, "personal key")
    assert capsules(http, created["key"]).status_code == 200
    assert capsules(http, other["key"]).status_code == 200

    resp = http.delete(f"/v1/teams/{owner.team_id}", headers=owner.headers)
    assert resp.status_code == 204, resp.text

    assert capsules(http, created["key"]).status_code == 401
    # Only that team's keys went.
    assert capsules(http, other["key"]).status_code == 200


def test_entries_expire_and_the_oldest_go_first() -> None:
    now = [100.0]
    cache = PrincipalCache(2.0, max_entries=2, clock=lambda: now[0])
    p = Principal(kind=CredentialKind.API_KEY, team_id="t", user_id="u", api_key_id="k")
    cache.put("h1", p)
    now[0] += 1.9
    assert cache.get("h1") == p
    now[0] += 0.2
    assert cache.get("h1") is None
    for h in ("a", "b", "c"):
        cache.put(h, p)
    assert len(cache) == 2
    assert cache.get("a") is None
    cache.drop_team("t")
    assert len(cache) == 0


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache = PrincipalCache(0)
    cache.put("h", Principal(kind=CredentialKind.API_KEY, team_id="t", user_id=None))
    assert cache.get("h") is None


def event(type_: str, **payload: str) -> Event:
    return Event("e1", type_, 1, datetime.now(UTC), None, None, dict(payload))


async def test_other_replicas_deletions_reach_this_cache_through_the_bus() -> None:
    bus, cache = EventBus(), PrincipalCache(60)
    alice = Principal(kind=CredentialKind.API_KEY, team_id="t1", user_id="u", api_key_id="k1")
    bob = Principal(kind=CredentialKind.API_KEY, team_id="t2", user_id="u", api_key_id="k2")
    carol = Principal(kind=CredentialKind.API_KEY, team_id="t3", user_id="u", api_key_id="k3")
    for h, p in (("a", alice), ("b", bob), ("c", carol)):
        cache.put(h, p)
    watcher = asyncio.create_task(forget_deleted(bus, cache))
    while not bus._queues:
        await asyncio.sleep(0.01)
    bus.publish(event(API_KEY_DELETED, api_key_id="k1"))
    bus.publish(event(TEAM_DELETED, team_id="t2"))
    bus.publish(event("capsule.created", team_id="t3"))
    for _ in range(100):
        if cache.get("a") is None and cache.get("b") is None:
            break
        await asyncio.sleep(0.01)
    assert cache.get("a") is None
    assert cache.get("b") is None
    assert cache.get("c") == carol
    bus.close()
    await asyncio.wait_for(watcher, 5)


async def test_a_revocation_is_announced_for_the_other_replicas(
    http: httpx.Client, wrenn: Wrenn, alice: Account, db: Database
) -> None:
    created = wrenn.create_key(alice, "announced")
    key_id = ids.decode(ids.KEY, created["id"])
    assert http.delete(f"/v1/api-keys/{created['id']}", headers=alice.headers).status_code == 204
    # Revoking again (idempotent) announces nothing more.
    assert http.delete(f"/v1/api-keys/{created['id']}", headers=alice.headers).status_code == 204
    async with db.session() as session:
        rows = (
            (await session.execute(select(OutboxEvent).where(OutboxEvent.type == API_KEY_DELETED)))
            .scalars()
            .all()
        )
    assert [r.payload for r in rows if r.payload["api_key_id"] == key_id] == [
        {"api_key_id": key_id}
    ]
