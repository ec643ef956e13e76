"""The uplink tunnel on its own: an AgentClient over a tunnel into a small ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hangar.agentproto.client import AgentClient, AgentError, AgentUnreachable
from hangar.agentproto.models import CreateSandbox
from hangar.agentproto.tunnel import (
    DEFAULT_WINDOW,
    MAX_CHUNK,
    MAX_FRAME,
    MAX_INBOX_FRAMES,
    Kind,
    TunnelClosed,
    TunnelSession,
    encode,
)
from hangar.agentproto.tunnel_asgi import serve_with

CHUNK = 16 * 1024


@dataclass
class Probe:
    """What the test app saw."""

    produced: int = 0
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)


def make_app(probe: Probe) -> FastAPI:
    app = FastAPI()

    @app.put("/echo")
    async def echo(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
        return Response(body, media_type="application/octet-stream")

    @app.get("/bytes/{size}")
    async def many(size: int) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                sent = 0
                while size < 0 or sent < size:
                    n = CHUNK if size < 0 else min(CHUNK, size - sent)
                    sent += n
                    probe.produced += n
                    yield os.urandom(n) if size < 0 else bytes([sent % 251]) * n
            finally:
                probe.stream_closed.set()

        return StreamingResponse(body())

    @app.get("/v1/info")
    async def slow() -> dict[str, str]:
        probe.slow_started.set()
        await asyncio.sleep(3600)
        return {}

    @app.post("/v1/sandboxes")
    async def refuse() -> JSONResponse:
        return JSONResponse({"code": "template_not_found", "message": "no such"}, 404)

    @app.websocket("/v1/sandboxes/{sandbox_id}/pty")
    async def pty(ws: WebSocket, sandbox_id: str) -> None:
        if sandbox_id == "missing":
            await ws.send_denial_response(
                JSONResponse({"code": "sandbox_not_found", "message": "gone"}, 404)
            )
            return
        await ws.accept()
        try:
            while True:
                message = await ws.receive_json()
                if message.get("type") == "flood":
                    for i in range(int(message["count"])):
                        await ws.send_json({"type": "output", "i": i, "pad": "x" * 1000})
                    continue
                if message.get("type") == "bye":
                    await ws.close()
                    return
                await ws.send_json({"type": "echo", "sandbox": sandbox_id, "got": message})
        except WebSocketDisconnect:
            pass
        finally:
            probe.ws_closed.set()

    return app


class Pipe:
    """Two in-memory message queues standing in for one WebSocket connection."""

    def __init__(self) -> None:
        self.to_agent: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.to_plane: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.broken = False

    async def close(self) -> None:
        self.broken = True
        self.to_agent.put_nowait(None)
        self.to_plane.put_nowait(None)

    def ends(self) -> tuple[tuple[object, ...], tuple[object, ...]]:
        async def plane_send(frame: bytes) -> None:
            if self.broken:
                raise ConnectionError("broken")
            self.to_agent.put_nowait(frame)

        async def agent_send(frame: bytes) -> None:
            if self.broken:
                raise ConnectionError("broken")
            self.to_plane.put_nowait(frame)

        return (plane_send, self.to_plane.get, self.close), (
            agent_send,
            self.to_agent.get,
            self.close,
        )


@dataclass
class Linked:
    plane: TunnelSession
    agent: TunnelSession
    client: AgentClient
    pipe: Pipe
    probe: Probe


@contextlib.asynccontextmanager
async def linked(**kw: float) -> AsyncIterator[Linked]:
    probe = Probe()
    pipe = Pipe()
    (ps, pr, pc), (as_, ar, ac) = pipe.ends()
    plane = TunnelSession(ps, pr, pc, **kw)  # type: ignore[arg-type]
    agent = TunnelSession(as_, ar, ac, on_open=serve_with(make_app(probe)), **kw)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(plane.run()), asyncio.create_task(agent.run())]
    client = AgentClient.over_tunnel(plane)
    try:
        yield Linked(plane, agent, client, pipe, probe)
    finally:
        await client.aclose()
        await agent.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def test_many_concurrent_channels() -> None:
    async with linked() as t:
        bodies = [os.urandom(1000 + 97 * i) for i in range(60)]
        results = await asyncio.gather(*(t.client._http.put("/echo", content=b) for b in bodies))
        assert [r.content for r in results] == bodies
        assert all(r.status_code == 200 for r in results)
        await asyncio.sleep(0.05)
        assert t.plane.channel_count == 0
        assert t.agent.channel_count == 0


async def test_large_bodies_both_ways() -> None:
    async with linked() as t:
        upload = os.urandom(6 * 1024 * 1024 + 123)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(upload), 100_000):
                yield upload[i : i + 100_000]

        r = await t.client._http.put("/echo", content=chunks(), timeout=60)
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(upload).digest()
        size = 9 * 1024 * 1024 + 5
        r = await t.client._http.get(f"/bytes/{size}", timeout=60)
        assert len(r.content) == size


async def test_slow_reader_bounds_buffering() -> None:
    """The producer runs at most about a window ahead of a slow consumer, never further."""
    async with linked() as t:
        async with t.client._http.stream("GET", "/bytes/-1") as response:
            consumed = 0
            ahead = []
            async for chunk in response.aiter_raw():
                consumed += len(chunk)
                await asyncio.sleep(0.002)  # a slow reader
                ahead.append(t.probe.produced - consumed)
                channel = next(iter(t.plane._channels.values()))
                assert channel.buffered <= DEFAULT_WINDOW + MAX_CHUNK
                if consumed > 6 * DEFAULT_WINDOW:
                    break
            # Had nothing held the producer back, it would be megabytes ahead by now.
            assert max(ahead) <= DEFAULT_WINDOW + 2 * CHUNK + MAX_CHUNK
        # Leaving early cancels the channel: the agent's handler ends and production stops.
        for _ in range(500):
            if t.agent.channel_count == 0:
                break
            await asyncio.sleep(0.01)
        assert t.agent.channel_count == 0
        stopped_at = t.probe.produced
        await asyncio.sleep(0.2)
        assert t.probe.produced == stopped_at


async def test_a_stalled_channel_does_not_stall_the_others() -> None:
    async with linked() as t, t.client._http.stream("GET", "/bytes/-1") as stalled:
        # Nobody reads this one: it fills its window and its producer waits...
        await asyncio.sleep(0.2)
        held = t.probe.produced
        assert held <= DEFAULT_WINDOW + 2 * CHUNK + MAX_CHUNK
        # ...while every other channel on the same connection carries on.
        bodies = [os.urandom(50_000) for _ in range(20)]
        results = await asyncio.wait_for(
            asyncio.gather(*(t.client._http.put("/echo", content=b) for b in bodies)), 30
        )
        assert [r.content for r in results] == bodies
        assert t.probe.produced == held
        assert stalled.status_code == 200


async def test_window_violation_ends_the_session() -> None:
    async with linked() as t:
        channel = t.plane.open()
        await channel.send_head(Kind.OPEN_WS, {"path": "/v1/sandboxes/x/pty", "headers": []})
        assert (await channel.receive(5)).json()["status"] == 101
        # Ignore the window: push twice its size without waiting for credit.
        for _ in range(2 * DEFAULT_WINDOW // 1000 + 2):
            with contextlib.suppress(TunnelClosed):
                await t.plane.send_frame(
                    encode(channel.id, Kind.TEXT, b'{"x":"' + b"a" * 990 + b'"}')
                )
        # A peer ignoring flow control is not talked to any further: the whole uplink goes.
        await asyncio.wait_for(t.agent.done.wait(), 10)
        assert t.agent.closed_by_violation
        await asyncio.wait_for(t.plane.done.wait(), 10)
        await asyncio.wait_for(t.probe.ws_closed.wait(), 10)


@contextlib.asynccontextmanager
async def hostile_agent() -> AsyncIterator[tuple[TunnelSession, Pipe]]:
    """A control plane's session whose agent end is the test, writing raw frames."""
    pipe = Pipe()
    (ps, pr, pc), _ = pipe.ends()
    plane = TunnelSession(ps, pr, pc)  # type: ignore[arg-type]
    runner = asyncio.create_task(plane.run())
    try:
        yield plane, pipe
    finally:
        await plane.close()
        await asyncio.wait_for(runner, 10)


def _head(status: int) -> bytes:
    return json.dumps({"status": status, "headers": []}).encode()


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([(Kind.RESPONSE, _head(200))] * 2, id="second-response"),
        pytest.param([(Kind.RESPONSE, _head(200)), (Kind.END, b""), (Kind.END, b"")], id="end"),
        pytest.param([(Kind.RESPONSE, _head(101)), (Kind.CLOSE, b"{}"), (Kind.TEXT, b"x")], id="c"),
        pytest.param([(Kind.DATA, b"x")], id="data-before-response"),
        pytest.param([(Kind.OPEN_HTTP, b"{}")], id="open-towards-the-opener"),
        pytest.param([(Kind.CREDIT, struct.pack(">I", DEFAULT_WINDOW))], id="credit-overflow"),
        pytest.param([(Kind.CANCEL, b""), (Kind.CANCEL, b"")], id="after-cancel"),
    ],
)
async def test_protocol_violations_end_the_session(frames: list[tuple[Kind, bytes]]) -> None:
    async with hostile_agent() as (plane, pipe):
        channel = plane.open()
        await channel.send_head(Kind.OPEN_HTTP, {"method": "GET", "path": "/", "headers": []})
        for kind, payload in frames:
            pipe.to_plane.put_nowait(encode(channel.id, kind, payload))
        await asyncio.wait_for(plane.done.wait(), 10)
        assert plane.closed_by_violation


async def test_frames_for_channels_never_opened_end_the_session() -> None:
    async with hostile_agent() as (plane, pipe):
        pipe.to_plane.put_nowait(encode(7, Kind.END))
        await asyncio.wait_for(plane.done.wait(), 10)
        assert plane.closed_by_violation


async def test_unbounded_frames_are_refused_not_queued() -> None:
    """200k heads, ends and empty messages: the session ends instead of queueing them."""
    async with hostile_agent() as (plane, pipe):
        channel = plane.open()
        await channel.send_head(Kind.OPEN_WS, {"path": "/", "headers": []})
        pipe.to_plane.put_nowait(encode(channel.id, Kind.RESPONSE, _head(101)))
        for _ in range(200_000):  # within the window (empty), but no consumer reads them
            pipe.to_plane.put_nowait(encode(channel.id, Kind.TEXT))
        await asyncio.wait_for(plane.done.wait(), 30)
        assert plane.closed_by_violation
        assert channel._inbox.qsize() <= MAX_INBOX_FRAMES + 1


async def test_pings_from_a_peer_that_does_not_read_keep_one_pong_pending() -> None:
    stalled = asyncio.Event()  # never set: the peer stopped reading, our sends block

    async def send(frame: bytes) -> None:
        await stalled.wait()

    inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    plane = TunnelSession(send, inbox.get)
    runner = asyncio.create_task(plane.run())
    for i in range(200_000):
        inbox.put_nowait(encode(0, Kind.PING, b"%d" % i))
    for _ in range(3000):
        if inbox.empty():
            break
        await asyncio.sleep(0.01)
    assert inbox.empty()
    await asyncio.sleep(0.05)
    assert not plane.closed
    assert len(plane._tasks) <= 2  # one PONG blocked in send; nothing else piled up
    inbox.put_nowait(None)
    await asyncio.wait_for(runner, 10)


async def test_late_frames_on_a_released_channel_within_its_window_are_dropped() -> None:
    async with hostile_agent() as (plane, pipe):
        channel = plane.open()
        await channel.send_head(Kind.OPEN_HTTP, {"method": "GET", "path": "/", "headers": []})
        channel.release()  # the caller gave up; the agent has not heard yet
        pipe.to_plane.put_nowait(encode(channel.id, Kind.RESPONSE, _head(200)))
        for _ in range(DEFAULT_WINDOW // MAX_CHUNK):
            pipe.to_plane.put_nowait(encode(channel.id, Kind.DATA, b"x" * MAX_CHUNK))
        pipe.to_plane.put_nowait(encode(channel.id, Kind.END))
        pipe.to_plane.put_nowait(encode(0, Kind.PING, b"1"))
        # The PONG comes back: everything before it was read, and the session is still up.
        while True:
            frame = await asyncio.wait_for(pipe.to_agent.get(), 10)
            assert frame is not None
            if frame[4] == Kind.PONG:
                break
        assert not plane.closed
        assert channel._inbox.empty()
        # One more byte than the window was ever open for is abuse, released or not.
        pipe.to_plane.put_nowait(encode(channel.id, Kind.DATA, b"x"))
        await asyncio.wait_for(plane.done.wait(), 10)
        assert plane.closed_by_violation


async def test_oversized_stream_messages_are_refused_before_sending() -> None:
    async with linked() as t:
        channel = t.plane.open()
        with pytest.raises(ValueError, match="limited to"):
            await channel.send_message(b"x" * MAX_FRAME)
        assert not t.plane.closed


async def test_cancelling_a_call_cancels_the_channel() -> None:
    async with linked() as t:
        call = asyncio.create_task(t.client.info())
        await asyncio.wait_for(t.probe.slow_started.wait(), 10)
        assert t.agent.channel_count == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(200):
            if t.plane.channel_count == 0 and t.agent._channels[1].remote_cancelled:
                break
            await asyncio.sleep(0.01)
        assert t.plane.channel_count == 0
        assert t.agent._channels[1].remote_cancelled


async def test_stream_through_tunnel_and_refusals() -> None:
    async with linked() as t:
        stream = await t.client.stream("sb1", "pty")
        await stream.send({"type": "input", "data": "aGk="})
        messages = aiter(stream)
        assert await anext(messages) == {
            "type": "echo",
            "sandbox": "sb1",
            "got": {"type": "input", "data": "aGk="},
        }
        # Many messages, more than a window's worth, read slowly: all arrive in order.
        await stream.send({"type": "flood", "count": 2000})
        for i in range(2000):
            message = await anext(messages)
            assert message["i"] == i
            if i % 200 == 0:
                await asyncio.sleep(0.01)
        await stream.send({"type": "bye"})
        assert [m async for m in messages] == []
        await stream.close()

        with pytest.raises(AgentError) as refused:
            await t.client.stream("missing", "pty")
        assert refused.value.code == "sandbox_not_found"
        assert refused.value.status == 404
        with pytest.raises(AgentError) as http_refused:
            await t.client.create_sandbox(
                CreateSandbox(sandbox_id="a", template="t", vcpus=1, memory_mb=64)
            )
        assert http_refused.value.code == "template_not_found"


async def test_broken_connection_fails_in_flight_calls() -> None:
    async with linked() as t:
        stream = await t.client.stream("sb2", "pty")
        call = asyncio.create_task(t.client.info())
        await asyncio.wait_for(t.probe.slow_started.wait(), 10)
        await t.pipe.close()
        with pytest.raises(AgentUnreachable):
            await asyncio.wait_for(call, 10)
        with pytest.raises(AgentUnreachable):
            async for _ in stream:
                pass
        with pytest.raises(AgentUnreachable):
            await t.client.list_sandboxes()
        await asyncio.wait_for(t.probe.ws_closed.wait(), 10)


async def test_silent_peer_is_dropped() -> None:
    pipe = Pipe()
    (ps, pr, pc), _ = pipe.ends()
    plane = TunnelSession(ps, pr, pc, keepalive=0.05, dead_after=0.3)  # type: ignore[arg-type]
    runner = asyncio.create_task(plane.run())
    await asyncio.wait_for(runner, 10)  # nobody answers its pings: the tunnel closes itself
    assert plane.closed
    pings = [pipe.to_agent.get_nowait() for _ in range(pipe.to_agent.qsize())]
    kinds = {struct.unpack(">IB", f[:5])[1] for f in pings if f is not None}
    assert Kind.PING in kinds


async def test_hello_reaches_the_agent() -> None:
    async with linked() as t:
        await t.plane.send_hello({"proof": "x"})
        assert await t.agent.hello(5) == {"proof": "x"}
        assert json.loads(json.dumps({"ok": 1})) == {"ok": 1}


async def test_a_malformed_hello_ends_the_session() -> None:
    pipe = Pipe()
    _, (as_, ar, ac) = pipe.ends()
    agent = TunnelSession(as_, ar, ac, on_open=serve_with(make_app(Probe())))  # type: ignore[arg-type]
    runner = asyncio.create_task(agent.run())
    pipe.to_agent.put_nowait(encode(0, Kind.HELLO, b"[1]"))  # JSON, but not an object
    with pytest.raises(TunnelClosed):
        await agent.hello(10)
    await asyncio.wait_for(runner, 10)
    assert agent.closed_by_violation
