"""Correlation ids end to end (issue 13): headers in and out, outbox events, agent calls.

A real control plane on SQLite and PostgreSQL with a real agent process (fake runtime); the
uplink path is shown on a tunnel into a small app that records what it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from sqlalchemy import select

from hangar.agentproto.client import AgentClient
from hangar.agentproto.tunnel import TunnelSession
from hangar.agentproto.tunnel_asgi import serve_with
from hangar.core import correlation
from hangar.core.events.models import OutboxEvent
from hangar.faces.wrenn import ids
from support.hosts import db
from support.processes import wait_until

from .conftest import Kit, Team

MINTED = re.compile(r"[0-9a-f]{32}")


def new_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("path", ["/wrenn/v1/capsules", "/fastvm/v1/vms", "/healthz"])
def test_the_id_comes_back_in_the_header_the_client_used(kit: Kit, team: Team, path: str) -> None:
    with kit.client() as c:
        rid = new_id("rid")
        answer = c.get(path, headers={**team.headers, "X-Request-Id": rid})
        assert answer.headers.get_list("x-request-id") == [rid]
        assert "x-correlation-id" not in answer.headers

        cid = new_id("cid")
        answer = c.get(path, headers={**team.headers, "X-Correlation-Id": cid})
        assert answer.headers.get_list("x-correlation-id") == [cid]
        assert "x-request-id" not in answer.headers

        minted = c.get(path, headers=team.headers)
        assert MINTED.fullmatch(minted.headers["x-correlation-id"])
        assert "x-request-id" not in minted.headers

        # Unusable ids are replaced, but still answered in the header the client reads.
        bad = c.get(path, headers={**team.headers, "X-Request-Id": "no spaces allowed"})
        assert MINTED.fullmatch(bad.headers["x-request-id"])


def test_an_error_answer_carries_the_request_id(kit: Kit, team: Team) -> None:
    rid = new_id("err")
    with kit.client() as c:
        missing = c.get("/fastvm/v1/vms/not-a-uuid", headers={**team.headers, "X-Request-Id": rid})
    assert missing.status_code in (400, 404)
    assert missing.headers["x-request-id"] == rid


def events_of(kit: Kit, cid: str) -> list[OutboxEvent]:
    with db(kit.live) as s:
        rows = s.scalars(
            select(OutboxEvent).where(OutboxEvent.correlation_id == cid).order_by(OutboxEvent.seq)
        ).all()
        s.expunge_all()
        return list(rows)


def agent_lines(kit: Kit, event: str) -> list[dict[str, Any]]:
    lines = []
    for raw in kit.agent.log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict) and line.get("event") == event:
                lines.append(line)
    return lines


def test_a_request_id_reaches_its_events_and_the_agent(kit: Kit, team: Team) -> None:
    rid = new_id("create")
    with kit.client() as c:
        made = c.post(
            "/wrenn/v1/capsules",
            json={"memory_mb": 256},
            headers={**team.headers, "X-Request-Id": rid},
        )
        assert made.status_code == 201, made.text
        assert made.headers["x-request-id"] == rid
        capsule_id = ids.decode(ids.CAPSULE, made.json()["id"])

        # Every event the request recorded names its id (and only this request's events do).
        recorded = events_of(kit, rid)
        assert {e.type for e in recorded} >= {"capsule.created", "capsule.running"}
        assert {e.payload["capsule_id"] for e in recorded} == {capsule_id}

        # The agent was sent the id and wrote it on its own log line for the sandbox.
        created = wait_until(
            "the agent's log line", lambda: agent_lines(kit, "sandbox.created"), timeout=10
        )
        ours = [line for line in created if line.get("sandbox_id") == capsule_id]
        assert [line.get("correlation_id") for line in ours] == [rid]

        did = new_id("destroy")
        gone = c.delete(
            f"/wrenn/v1/capsules/{made.json()['id']}",
            headers={**team.headers, "X-Correlation-Id": did},
        )
        assert gone.status_code in (200, 204), gone.text
    destroyed = wait_until(
        "the destroy's log line",
        lambda: [
            line
            for line in agent_lines(kit, "sandbox.destroyed")
            if line.get("sandbox_id") == capsule_id
        ],
        timeout=10,
    )
    assert {line.get("correlation_id") for line in destroyed} == {did}


def test_a_background_job_records_events_under_its_own_id(kit: Kit, team: Team) -> None:
    """The reconciler auto-pauses an idle capsule: `capsule.paused` names the tick's id."""
    rid = new_id("idle")
    with kit.client() as c:
        made = c.post(
            "/wrenn/v1/capsules",
            json={"memory_mb": 256, "timeout_sec": 1},
            headers={**team.headers, "X-Request-Id": rid},
        )
        assert made.status_code == 201, made.text
    capsule_id = ids.decode(ids.CAPSULE, made.json()["id"])

    def paused() -> list[OutboxEvent]:
        with db(kit.live) as s:
            rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "capsule.paused")).all()
            s.expunge_all()
            return [e for e in rows if e.payload.get("capsule_id") == capsule_id]

    events = wait_until("the auto-pause", paused, timeout=30)
    assert len(events) == 1
    tick = events[0].correlation_id
    assert tick is not None
    assert MINTED.fullmatch(tick)
    assert tick != rid


class _Pipe:
    """Two in-memory queues standing in for the uplink's WebSocket."""

    def __init__(self) -> None:
        self.up: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.down: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def close(self) -> None:
        self.up.put_nowait(None)
        self.down.put_nowait(None)

    def sessions(self, app: FastAPI) -> tuple[TunnelSession, TunnelSession]:
        async def plane_send(frame: bytes) -> None:
            self.down.put_nowait(frame)

        async def agent_send(frame: bytes) -> None:
            self.up.put_nowait(frame)

        plane = TunnelSession(plane_send, self.up.get, self.close)  # type: ignore[arg-type]
        agent = TunnelSession(
            agent_send,
            self.down.get,  # type: ignore[arg-type]
            self.close,
            on_open=serve_with(app),
        )
        return plane, agent


@contextlib.asynccontextmanager
async def uplinked(seen: list[tuple[str, str | None]]) -> AsyncIterator[AgentClient]:
    app = FastAPI()

    @app.get("/v1/sandboxes")
    async def listed(request: Request) -> list[Any]:
        seen.append(("http", request.headers.get("x-correlation-id")))
        return []

    @app.websocket("/v1/sandboxes/{sandbox_id}/pty")
    async def pty(ws: WebSocket, sandbox_id: str) -> None:
        seen.append(("ws", ws.headers.get("x-correlation-id")))
        await ws.accept()
        await ws.send_json({"type": "hello", "sandbox": sandbox_id})
        await ws.close()

    plane, agent = _Pipe().sessions(app)
    tasks = [asyncio.create_task(plane.run()), asyncio.create_task(agent.run())]
    client = AgentClient.over_tunnel(plane)
    try:
        yield client
    finally:
        await client.aclose()
        await agent.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_calls_and_streams_over_an_uplink_carry_the_id() -> None:
    seen: list[tuple[str, str | None]] = []
    async with uplinked(seen) as client:
        with correlation.bound("tick-1"):
            assert await client.list_sandboxes() == []
            stream = await client.stream("sb-1", "pty")
            assert [m async for m in stream] == [{"type": "hello", "sandbox": "sb-1"}]
            await stream.close()
        await client.list_sandboxes()  # outside any request or job: no id is made up
    assert seen == [("http", "tick-1"), ("ws", "tick-1"), ("http", None)]
