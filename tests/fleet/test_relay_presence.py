"""Uplink presence rows and the fleet's relayed clients, on a real (SQLite) database.

The end-to-end test with two `hangar serve` replicas is tests/agent/uplink/test_relay.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.errors import Unavailable
from hangar.core.fleet.gateway import Fleet
from hangar.core.fleet.relay import RELAY_AUDIENCE, refresh
from hangar.core.hosts import presence
from hangar.core.hosts.models import Host, HostStatus, HostType
from hangar.core.ids import new_id
from hangar.core.security.jwt import TokenSigner, generate_key

ME = "http://10.0.0.1:8080"
OTHER = "http://10.0.0.2:8080"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    await upgrade(database)
    yield database
    await database.dispose()


async def add_host(db: Database, owner: str | None) -> str:
    host_id = new_id()
    async with db.session() as session:
        session.add(
            Host(
                id=host_id,
                type=HostType.REGULAR,
                status=HostStatus.ONLINE,
                cpu_cores=4,
                memory_mb=8192,
                uplink_replica=owner,
            )
        )
        await session.commit()
    return host_id


async def owners(db: Database) -> dict[str, str | None]:
    async with db.session() as session:
        rows = await session.execute(select(Host.id, Host.uplink_replica))
        found: dict[str, str | None] = {}
        for host_id, owner in rows:
            found[host_id] = owner
        return found


async def test_reconcile_claims_free_rows_keeps_others_and_releases_gone_ones(
    db: Database,
) -> None:
    free, theirs, stale = (
        await add_host(db, None),
        await add_host(db, OTHER),
        await add_host(db, ME),
    )
    async with db.session() as session:
        found = await presence.reconcile(session, {free, theirs}, ME)
        await session.commit()
    assert found == {free: ME, theirs: OTHER}
    assert await owners(db) == {free: ME, theirs: OTHER, stale: None}

    # A release names its replica: a row another replica has taken since is left alone.
    async with db.session() as session:
        await presence.release(session, theirs, ME)
        await presence.claim(session, stale, OTHER)
        await presence.release_all(session, ME)
        await session.commit()
    assert await owners(db) == {free: None, theirs: OTHER, stale: OTHER}


async def test_a_host_connected_elsewhere_is_reached_through_its_owners_relay(
    db: Database,
) -> None:
    signer = TokenSigner([generate_key()], "hangar")
    fleet = Fleet()
    remote, nowhere = await add_host(db, OTHER + "/"), await add_host(db, None)
    with pytest.raises(Unavailable):
        fleet.agent(remote)  # relaying is off until enabled
    fleet.enable_relays(ME, signer)
    await refresh(db, fleet)
    try:
        client = fleet.agent(remote)
        assert client.address == f"{OTHER}/agent/v1/relay/{remote}"
        assert fleet.agent(remote) is client  # reused while its token is fresh
        token = client._headers["Authorization"].removeprefix("Bearer ")
        claims = signer.verify(token, RELAY_AUDIENCE)
        assert claims["sub"] == remote
        with pytest.raises(Unavailable):
            fleet.agent(nowhere)
        assert fleet.handle(remote) is None  # not ours: no local-only duties for it
        assert fleet.uplink_hosts() == set()

        async with db.session() as session:
            placed = await fleet.place(session, new_id(), 1, 256, host_id=remote)
            assert placed.client is client
            with pytest.raises(Unavailable):
                await fleet.place(session, new_id(), 1, 256, host_id=nowhere)

        # The uplink moves here: no relay for it any more, nor for a host that went away.
        async with db.session() as session:
            await presence.claim(session, remote, ME)
            await session.commit()
        await refresh(db, fleet)
        with pytest.raises(Unavailable):
            fleet.agent(remote)
    finally:
        await fleet.aclose()
