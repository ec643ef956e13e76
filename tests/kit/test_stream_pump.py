"""The shared WebSocket ↔ agent stream pump, with a face's frames and a scripted agent stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hangar.agentproto.client import AgentStream
from hangar.agentproto.streams import (
    AgentEvent,
    Exit,
    Input,
    Kill,
    Output,
    StreamMessage,
)
from hangar.web.streams import Close, Frames, pump


class ScriptedStream(AgentStream):
    """An agent stream (the protocol boundary) that says what it is told to, then holds."""

    def __init__(self, script: list[dict[str, Any]], *, hold: bool = True, broken: bool = False):
        self.script = script
        self.hold, self.broken = hold, broken
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        for message in self.script:
            await asyncio.sleep(0.01)
            yield message
        if self.broken:
            raise ConnectionError("the host went away")
        if self.hold:
            await asyncio.Event().wait()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._messages()

    async def close(self) -> None:
        self.closed = True


class TextFrames(Frames):
    """A tiny face: text frames are keystrokes, output is text, `exit` closes with its code."""

    def __init__(self, ping_seconds: float | None = None) -> None:
        self.ping_seconds = ping_seconds
        self.failures: list[BaseException] = []

    async def receive(self, ws: WebSocket) -> Sequence[StreamMessage] | None:
        text = await ws.receive_text()
        return None if text == "bye" else [Input.of(text.encode())]

    async def send(self, ws: WebSocket, event: AgentEvent) -> Close | None:
        if isinstance(event, Output):
            await ws.send_text(event.raw().decode())
        elif isinstance(event, Exit):
            return Close(4000 + event.exit_code, "done")
        return None

    async def ping(self, ws: WebSocket) -> None:
        await ws.send_text("ping")

    async def failed(self, ws: WebSocket, exc: BaseException) -> None:
        self.failures.append(exc)

    async def finish(self, stream: AgentStream) -> None:
        await stream.put(Kill())


@contextlib.contextmanager
def served(stream: ScriptedStream, frames: TextFrames) -> Iterator[ClientConnection]:
    """A real uvicorn serving `pump` on `/ws`, and a client connected to it."""
    app = FastAPI()

    @app.websocket("/ws")
    async def ws_route(ws: WebSocket) -> None:
        await ws.accept()
        await pump(ws, stream, frames)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with connect(f"ws://127.0.0.1:{sock.getsockname()[1]}/ws", open_timeout=10) as ws:
            yield ws
    finally:
        server.should_exit = True
        thread.join(10)


def closed_with(ws: ClientConnection) -> tuple[int | None, str | None, list[str]]:
    """Read until the server closes: its close code and reason, and the frames before."""
    seen: list[str] = []
    try:
        while True:
            frame = ws.recv(timeout=10)
            assert isinstance(frame, str)
            seen.append(frame)
    except ConnectionClosed as closed:
        close = closed.rcvd
    return (close.code, close.reason, seen) if close else (None, None, seen)


def test_messages_flow_both_ways_and_an_exit_closes() -> None:
    stream = ScriptedStream(
        [
            {"type": "output", "data": "aGk="},
            {"type": "progress", "percent": 50},  # unknown to this control plane: skipped
            {"type": "exit", "exit_code": 3},
        ]
    )
    frames = TextFrames()
    with served(stream, frames) as ws:
        ws.send("ls")
        assert closed_with(ws) == (4003, "done", ["hi"])
    assert {"type": "input", "data": "bHM="} in stream.sent
    assert stream.sent[-1] == {"type": "kill"}  # the face's last words, before closing
    assert stream.closed
    assert frames.failures == []


def test_the_client_leaving_ends_the_stream() -> None:
    stream = ScriptedStream([])
    frames = TextFrames()
    with served(stream, frames) as ws:
        ws.send("bye")
        assert closed_with(ws) == (1000, "", [])
    assert stream.closed
    assert stream.sent == [{"type": "kill"}]


def test_pings_while_idle_and_a_broken_agent_stream_is_told() -> None:
    stream = ScriptedStream([], hold=False, broken=True)
    frames = TextFrames(ping_seconds=0.001)
    stream.script = [{"type": "output", "data": ""}] * 20  # a while before it breaks
    with served(stream, frames) as ws:
        code, _, seen = closed_with(ws)
    assert code == 1000
    assert stream.closed
    assert [type(e) for e in frames.failures] == [ConnectionError]
    assert "ping" in seen
    assert json.dumps(stream.sent) == json.dumps([{"type": "kill"}])
