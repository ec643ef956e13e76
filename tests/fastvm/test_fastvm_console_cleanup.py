"""The console's failure path between opening the agent stream and accepting the WebSocket.

A host that drops the stream at that moment is a race no live test can aim at, so the route's
`start_shell` is driven directly: an agent stream whose first send fails, a server whose
accept fails. Either way the stream is closed and the client gets a refusal or a close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.types import Message
from starlette.websockets import WebSocket

from hangar.agentproto.client import AgentStream, AgentUnreachable
from hangar.faces.fastvm.routes.console import start_shell
from hangar.faces.fastvm.settings import FastVMSettings


class Stream(AgentStream):
    """An agent stream that records what happens to it; its sends fail when told to."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.fail:
            raise AgentUnreachable("the host went away")
        self.sent.append(message)

    async def _nothing(self) -> AsyncIterator[dict[str, Any]]:
        return
        yield

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._nothing()

    async def close(self) -> None:
        self.closed = True


def websocket(sent: list[Message], fail_accept: bool = False) -> WebSocket:
    """A server-side WebSocket in its handshake; what the app sends is kept in `sent`."""
    scope = {
        "type": "websocket",
        "path": "/v1/vms/x/console/ws",
        "headers": [],
        "extensions": {"websocket.http.response": {}},
    }

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        if fail_accept and message["type"] == "websocket.accept":
            raise OSError("the client went away")
        sent.append(message)

    return WebSocket(scope, receive, send)


def test_a_failed_start_closes_the_stream_and_denies_the_upgrade() -> None:
    sent: list[Message] = []
    stream = Stream(fail=True)
    assert anyio.run(start_shell, websocket(sent), stream, FastVMSettings()) is None
    assert stream.closed
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 409
    assert b'"error"' in b"".join(m.get("body", b"") for m in sent[1:])


def test_a_failed_accept_closes_the_stream() -> None:
    sent: list[Message] = []
    stream = Stream(fail=False)
    assert (
        anyio.run(start_shell, websocket(sent, fail_accept=True), stream, FastVMSettings()) is None
    )
    assert stream.sent[0]["type"] == "start"
    assert stream.closed


def test_a_good_start_keeps_the_stream_open() -> None:
    sent: list[Message] = []
    stream = Stream(fail=False)
    assert anyio.run(start_shell, websocket(sent), stream, FastVMSettings()) is stream
    assert not stream.closed
    assert sent == [{"type": "websocket.accept", "subprotocol": None, "headers": []}]
