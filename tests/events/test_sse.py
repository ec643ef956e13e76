"""`GET /events`: a team's events as server-sent events, in one process and across replicas.

The in-process tests use the shared live server (`server`, both backends) and record events
through the core's outbox in its database, as the core's services do. The end-to-end tests run
`hangar serve` subprocesses with the fake agent runtime and create real capsules; the last one
runs two replicas on one PostgreSQL database and the NATS JetStream on 127.0.0.1:4222
(`HANGAR_TEST_NATS_URL`), and reads an event on the replica that did not create the capsule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError

import hangar.web.events as sse
from hangar.core.db import Database
from hangar.core.events.bus import EventBus
from hangar.core.events.envelope import Event
from hangar.core.events.outbox import record
from hangar.core.security.jwt import generate_key
from hangar.faces.wrenn import ids
from support.live import LiveServer, free_port, fresh_postgres_database, hangar_command, wait_http
from support.processes import clean_env, stop_process
from support.wrenn import Account, Wrenn, bearer, error_of

NATS_URL = os.environ.get("HANGAR_TEST_NATS_URL", "nats://127.0.0.1:4222")
WAIT = 30.0  # generous: the suite may share the machine with heavier work


# -- an SSE client ------------------------------------------------------------------------------


@dataclass
class Message:
    """One dispatched SSE message, or one comment line."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.data)
        return body


@dataclass
class EventStream:
    """Reads a `text/event-stream` response in a background task, message by message."""

    response: httpx.Response
    messages: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)

    async def read(self) -> None:
        current = Message()
        async for line in self.response.aiter_lines():
            if line.startswith(":"):
                await self.messages.put(Message(comment=line[1:].strip()))
                continue
            if not line:
                if current.event is not None or current.data:
                    await self.messages.put(current)
                current = Message()
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value

    async def next(self, *, comments: bool = False, timeout: float = WAIT) -> Message:
        """The next event (or, with `comments`, the next message of any kind)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                if comments or message.comment is None:
                    return message

    async def events(self, n: int, timeout: float = WAIT) -> list[Message]:
        return [await self.next(timeout=timeout) for _ in range(n)]

    async def assert_quiet(self, seconds: float) -> None:
        """No event arrives for a while (comments are fine)."""
        with contextlib.suppress(TimeoutError):
            extra = await self.next(timeout=seconds)
            pytest.fail(f"unexpected event {extra}")


@contextlib.asynccontextmanager
async def subscribe(base_url: str, token: str, **params: str) -> AsyncIterator[EventStream]:
    """An open stream, returned once the server says it is subscribed (`: connected`)."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(WAIT, read=None)) as client,
        client.stream("GET", "/events", headers=bearer(token), params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        stream = EventStream(response)
        reader = asyncio.create_task(stream.read())
        try:
            first = await stream.next(comments=True)
            assert first.comment == "connected", first
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


def core_team(account: Account) -> str:
    """The core team UUID behind a Wrenn team id: what events carry."""
    team = ids.decode(ids.TEAM, account.team_id)
    assert team
    return team


async def record_events(server: LiveServer, *events: tuple[str, str | None]) -> list[str]:
    """Commit events `(type, team)` to the server's outbox, in one transaction, in order."""
    db = Database(server.settings.resolved_database_url())
    try:
        async with db.session() as session:
            rows = [
                record(session, type_, team_id=team, payload={"n": n})
                for n, (type_, team) in enumerate(events)
            ]
            await session.commit()
            return [row.id for row in rows]
    finally:
        await db.dispose()


# -- the stream itself, without a server ---------------------------------------------------------


def test_an_event_is_one_sse_message_with_the_envelope_as_json() -> None:
    event = Event.from_json(
        b'{"id":"e1","type":"capsule.created","version":1,"occurred_at":"2025-01-02T03:04:05Z",'
        b'"correlation_id":null,"team_id":"t1","payload":{"text":"a\\nb"}}'
    )
    message = sse.format_event(event)
    assert message.startswith(b"id: e1\nevent: capsule.created\ndata: {")
    assert message.endswith(b"}\n\n")
    assert message.count(b"\n") == 4  # newlines inside the payload stay escaped in the JSON
    assert json.loads(message.split(b"data: ", 1)[1]) == event.to_dict()


async def test_the_stream_filters_by_team_and_type_and_pings_when_idle() -> None:
    bus = EventBus()
    chunks = sse.team_events(bus, "t1", frozenset({"a"}), heartbeat=0.3)
    assert await anext(chunks) == sse.CONNECTED  # subscribed before this was yielded

    def event(id_: str, type_: str, team: str | None) -> Event:
        return Event.from_json(
            json.dumps(
                {"id": id_, "type": type_, "version": 1, "occurred_at": "2025-01-02T03:04:05Z",
                 "team_id": team, "payload": {}}
            ).encode()
        )  # fmt: skip

    for e in (event("1", "a", "t2"), event("2", "b", "t1"), event("3", "a", None)):
        bus.publish(e)
    bus.publish(event("4", "a", "t1"))
    assert (await asyncio.wait_for(anext(chunks), 5)).startswith(b"id: 4\nevent: a\n")
    # Other teams' traffic does not hold the heartbeat back.
    for i in range(5):
        bus.publish(event(f"x{i}", "a", "t2"))
    assert await asyncio.wait_for(anext(chunks), 5) == sse.PING
    await chunks.aclose()
    assert not bus._queues  # the subscription ended with the stream


async def test_the_response_ends_and_unsubscribes_when_the_client_goes_away() -> None:
    bus = EventBus()
    response = sse.EventStreamResponse(sse.team_events(bus, "t1", None, heartbeat=60))
    sent: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await connected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body") == sse.CONNECTED:
            assert len(bus._queues) == 1
            connected.set()

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    await asyncio.wait_for(response(scope, receive, send), 5)
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert not any(k == b"content-length" for k, _ in sent[0]["headers"])
    assert not bus._queues


# -- in process: the shared live server ---------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer wrn_0123456789abcdef"],
)
def test_without_a_valid_user_token_the_answer_is_401(
    server: LiveServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    resp = httpx.get(f"{server.url}/events", headers=headers, timeout=WAIT)
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"


def test_the_main_ports_openapi_document_describes_the_stream(server: LiveServer) -> None:
    resp = httpx.get(f"{server.url}/openapi.json", timeout=WAIT)
    assert resp.status_code == 200, resp.text
    operation = resp.json()["paths"]["/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


async def test_a_client_receives_its_own_teams_events_only(server: LiveServer) -> None:
    with server.client() as http:
        alice, bob = Wrenn(http).signup(name="Alice"), Wrenn(http).signup(name="Bob")
    async with (
        subscribe(server.url, alice.token) as alices,
        subscribe(server.url, bob.token) as bobs,
    ):
        bob_id, _, alice_id = await record_events(
            server,
            ("capsule.created", core_team(bob)),
            ("host.up", None),  # platform-wide: no team's stream shows it
            ("capsule.created", core_team(alice)),
        )
        # Relayed in order, so anything not filtered out would have arrived first.
        got = await alices.next()
        assert (got.id, got.event) == (alice_id, "capsule.created")
        body = got.json()
        assert body["id"] == alice_id
        assert body["type"] == "capsule.created"
        assert body["team_id"] == core_team(alice)
        assert body["payload"] == {"n": 2}
        assert body["version"] == 1
        assert body["occurred_at"].endswith("Z")
        assert "correlation_id" in body
        got = await bobs.next()
        assert (got.id, got.json()["team_id"]) == (bob_id, core_team(bob))
        await alices.assert_quiet(1.0)
        await bobs.assert_quiet(0.1)


async def test_types_selects_event_types(server: LiveServer) -> None:
    with server.client() as http:
        alice = Wrenn(http).signup(name="Alice")
    team = core_team(alice)
    async with subscribe(server.url, alice.token, types="capsule.paused, capsule.destroyed") as s:
        _, paused, _, destroyed = await record_events(
            server,
            ("capsule.created", team),
            ("capsule.paused", team),
            ("capsule.running", team),
            ("capsule.destroyed", team),
        )
        assert [(m.id, m.event) for m in await s.events(2)] == [
            (paused, "capsule.paused"),
            (destroyed, "capsule.destroyed"),
        ]


async def test_an_idle_stream_gets_a_heartbeat_comment(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.3)
    with server.client() as http:
        alice = Wrenn(http).signup(name="Alice")
    async with subscribe(server.url, alice.token) as s:
        pings = [await s.next(comments=True) for _ in range(2)]
    assert [m.comment for m in pings] == ["ping", "ping"]


# -- end to end: `hangar serve` processes with real capsules --------------------------------------


@dataclass
class Served:
    """A `hangar serve` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def wrenn_url(self) -> str:
        return f"{self.url}/wrenn"

    def stop(self) -> None:
        stop_process(self.proc)


def serve_env(**settings: str) -> dict[str, str]:
    """The caller's environment without any HANGAR_* setting, plus the given ones."""
    env = clean_env(HANGAR_AGENT_RUNTIME="fake", HANGAR_LOG_LEVEL="warning")
    env.update({f"HANGAR_{k.upper()}": v for k, v in settings.items()})
    return env


@contextlib.contextmanager
def hangar_serve(data_dir: Path, env: dict[str, str], *args: str) -> Iterator[Served]:
    """`hangar serve` on a free port until the block ends (its stderr in `data_dir/serve.log`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = data_dir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            hangar_command("serve", "--port", str(port), "--data-dir", str(data_dir), *args),
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=env,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        try:
            wait_http(f"{served.url}/livez", proc, timeout=120)
        except Exception:
            pytest.fail(f"hangar serve did not start: {log.read_text()[-3000:]}")
        yield served
    finally:
        served.stop()


async def create_capsule(api: httpx.AsyncClient, account: Account) -> str:
    """A capsule's core id (retrying while the local agent is still starting)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        resp = await api.post("/v1/capsules", json={"memory_mb": 256}, headers=account.headers)
        if resp.status_code != 503 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert resp.status_code == 201, resp.text
    capsule = ids.decode(ids.CAPSULE, resp.json()["id"])
    assert capsule
    return capsule


async def signup(api: httpx.AsyncClient, name: str) -> Account:
    email = f"sse-{uuid.uuid4().hex[:12]}@example.com"
    resp = await api.post(
        "/v1/auth/signup",
        json={"email": email, "password": "correct horse battery", "name": name},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return Account(
        body["email"],
        "correct horse battery",
        name,
        body["user_id"],
        body["team_id"],
        body["token"],
    )


def lifecycle(messages: list[Message]) -> list[tuple[str | None, str]]:
    return [(m.event, m.json()["payload"]["capsule_id"]) for m in messages]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_real_capsules_lifecycle_reaches_its_teams_stream(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One process, no NATS: the relay publishes straight to the local bus."""
    with hangar_serve(tmp_path_factory.mktemp("sse"), serve_env()) as one:
        async with httpx.AsyncClient(base_url=one.wrenn_url, timeout=WAIT) as api:
            alice, bob = await signup(api, "Alice"), await signup(api, "Bob")
            async with subscribe(one.url, alice.token) as stream:
                await create_capsule(api, bob)
                capsule = await create_capsule(api, alice)
                first = await stream.events(2)
                wire = ids.encode(ids.CAPSULE, capsule)
                resp = await api.delete(f"/v1/capsules/{wire}", headers=alice.headers)
                assert resp.status_code == 204, resp.text
                got = [*first, await stream.next()]
        assert lifecycle(got) == [
            ("capsule.created", capsule),
            ("capsule.running", capsule),
            ("capsule.destroyed", capsule),
        ]
        assert {m.json()["team_id"] for m in got} == {core_team(alice)}


@pytest.fixture
async def nats_stream() -> AsyncIterator[tuple[str, str]]:
    """A stream name and subject prefix of this test's own, deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"HANGAR_SSE_{tag}", f"test.sse.{tag}"
    try:
        nc = await nats.connect(NATS_URL, connect_timeout=5, max_reconnect_attempts=1)
    except Exception as exc:  # pragma: no cover - environment
        pytest.fail(f"NATS is not reachable at {NATS_URL}: {exc}")
    try:
        yield stream, prefix
    finally:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(stream)
        await nc.close()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_replica_streams_events_of_capsules_created_on_another(
    backend: str, nats_stream: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two `hangar serve` on one PostgreSQL database and one NATS: the client of replica 2 sees
    the capsule that replica 1 (the one with the agent) created, once, and only its team's."""
    stream_name, prefix = nats_stream
    key = json.dumps(generate_key().as_dict(private=True))
    root = tmp_path_factory.mktemp("sse")
    with fresh_postgres_database() as database_url:
        env = serve_env(
            database_url=database_url,
            nats_url=NATS_URL,
            nats_stream=stream_name,
            nats_subject_prefix=prefix,
            jwt_signing_keys=json.dumps([key]),  # both replicas sign and verify alike
        )
        with (
            hangar_serve(root / "one", env) as one,
            hangar_serve(root / "two", env, "--no-local-agent") as two,
        ):
            async with (
                httpx.AsyncClient(base_url=one.wrenn_url, timeout=WAIT) as api,
                httpx.AsyncClient(base_url=two.wrenn_url, timeout=WAIT) as api_two,
            ):
                alice, bob = await signup(api, "Alice"), await signup(api, "Bob")
                # Replica 2 has no agent: a capsule can only be made on replica 1.
                resp = await api_two.post("/v1/capsules", json={}, headers=alice.headers)
                assert resp.status_code >= 400, resp.text
                async with (
                    subscribe(two.url, alice.token) as on_two,
                    subscribe(one.url, alice.token) as on_one,
                ):
                    await create_capsule(api, bob)  # another team's, first
                    capsule = await create_capsule(api, alice)
                    got_two = await on_two.events(2)
                    got_one = await on_one.events(2)
                    wire = ids.encode(ids.CAPSULE, capsule)
                    resp = await api.delete(f"/v1/capsules/{wire}", headers=alice.headers)
                    assert resp.status_code == 204, resp.text
                    got_two.append(await on_two.next())
                    await on_two.assert_quiet(1.0)  # nothing twice, nothing of Bob's
        expected = [
            ("capsule.created", capsule),
            ("capsule.running", capsule),
            ("capsule.destroyed", capsule),
        ]
        assert lifecycle(got_two) == expected
        assert lifecycle(got_one) == expected[:2]
        assert [m.id for m in got_one] == [m.id for m in got_two[:2]]
        assert len({m.id for m in got_two}) == 3
        assert {m.json()["team_id"] for m in got_two} == {core_team(alice)}
