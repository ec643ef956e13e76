"""The outbox relay against real databases and the real NATS JetStream on 127.0.0.1:4222."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import select

from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.events.bus import EventBus
from hangar.core.events.envelope import Event
from hangar.core.events.models import OutboxEvent
from hangar.core.events.nats import NatsEvents
from hangar.core.events.outbox import record
from hangar.core.events.relay import Relay
from support.live import fresh_postgres_database

NATS_URL = os.environ.get("HANGAR_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
async def db(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    if backend == "postgres":
        with fresh_postgres_database() as url:
            database = Database(url)
            await upgrade(database)
            yield database
            await database.dispose()
    else:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
        await upgrade(database)
        yield database
        await database.dispose()


async def _record(db: Database, n: int, type_: str = "capsule.created") -> list[str]:
    async with db.session() as session:
        ids = [record(session, type_, team_id=None, payload={"i": i}).id for i in range(n)]
        await session.commit()
    return ids


async def test_uncommitted_events_are_never_relayed(db: Database) -> None:
    async with db.session() as session:
        record(session, "capsule.created", team_id=None, payload={})
        await session.rollback()
    seen: list[Event] = []

    async def sink(events: list[Event]) -> None:
        seen.extend(events)

    assert await Relay(db, [sink]).relay_once() == 0
    assert seen == []


async def test_relay_delivers_in_order_and_retries_after_a_failing_sink(db: Database) -> None:
    ids = await _record(db, 5)
    bus = EventBus()
    calls = 0

    async def flaky(events: list[Event]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("sink down")
        for event in events:
            bus.publish(event)

    relay = Relay(db, [flaky])
    async with bus.subscribe() as queue:
        with pytest.raises(ConnectionError):
            await relay.relay_once()
        assert queue.empty()  # nothing was marked relayed, nothing lost
        assert await relay.relay_once() == 5
        got = [queue.get_nowait().id for _ in range(5)]
    assert got == ids
    assert await relay.relay_once() == 0


async def test_parallel_relays_deliver_each_event_once(backend: str, db: Database) -> None:
    if backend != "postgres":
        pytest.skip("several relays run side by side only on PostgreSQL (SKIP LOCKED)")
    ids = await _record(db, 300)
    delivered: list[str] = []

    async def sink(events: list[Event]) -> None:
        await asyncio.sleep(0.01)  # hold the claimed rows for a moment
        delivered.extend(e.id for e in events)

    relays = [Relay(db, [sink], batch=20) for _ in range(3)]

    async def drain(relay: Relay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    assert sorted(delivered) == sorted(ids)
    assert len(delivered) == len(set(delivered))


@pytest.fixture
async def jetstream() -> AsyncIterator[NatsEvents]:
    tag = uuid.uuid4().hex[:10]
    events = NatsEvents(NATS_URL, stream=f"HANGAR_TEST_{tag}", subject_prefix=f"test.{tag}")
    try:
        await events.connect()
    except Exception as exc:  # pragma: no cover - environment
        pytest.fail(f"NATS JetStream is not reachable at {NATS_URL}: {exc}")
    yield events
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(events.stream)
    await nc.close()
    await events.close()


async def test_events_reach_their_jetstream_subjects_without_duplicates(
    db: Database, jetstream: NatsEvents
) -> None:
    await _record(db, 2, "capsule.created")
    await _record(db, 1, "capsule.destroyed")
    relay = Relay(db, [jetstream.publish])
    assert await relay.relay_once() == 3

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    info = await js.stream_info(jetstream.stream)
    assert info.state.messages == 3
    # A relay that published but crashed before marking its rows publishes the same again.
    async with db.session() as session:
        rows = (await session.execute(select(OutboxEvent).order_by(OutboxEvent.seq))).scalars()
        again = [Event.from_row(r) for r in rows]
    await jetstream.publish(again)
    assert (await js.stream_info(jetstream.stream)).state.messages == 3  # Nats-Msg-Id dedupe

    sub = await js.pull_subscribe(f"{jetstream.prefix}.>", durable=None, stream=jetstream.stream)
    messages = await sub.fetch(3, timeout=5)
    subjects = [m.subject for m in messages]
    assert subjects == [
        f"{jetstream.prefix}.capsule.created",
        f"{jetstream.prefix}.capsule.created",
        f"{jetstream.prefix}.capsule.destroyed",
    ]
    first = Event.from_json(messages[0].data)
    assert messages[0].headers is not None
    assert messages[0].headers["Nats-Msg-Id"] == first.id == again[0].id
    assert first.payload == {"i": 0}
    await nc.close()


async def test_nats_feeds_the_bus_of_every_replica(db: Database, jetstream: NatsEvents) -> None:
    other = NatsEvents(NATS_URL, stream=jetstream.stream, subject_prefix=jetstream.prefix)
    await other.connect()
    replica_bus = EventBus()
    await other.feed(replica_bus)
    try:
        async with replica_bus.subscribe() as queue:
            [event_id] = await _record(db, 1, "host.up")
            await Relay(db, [jetstream.publish]).relay_once()
            got = await asyncio.wait_for(queue.get(), 5)
        assert (got.id, got.type) == (event_id, "host.up")
    finally:
        await other.close()
