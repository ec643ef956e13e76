"""WebSocket streams: `/v1/capsules/{id}/exec/stream` and `/v1/capsules/{id}/pty`.

The face only translates Wrenn's messages to the agent protocol's and back (web/streams
pumps them); the agent owns the processes, PTY sessions, replay buffers and idle timeouts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from hangar.agentproto.client import AgentStream
from hangar.agentproto.streams import (
    AgentEvent,
    Error,
    InvalidMessage,
    ProcessStart,
    PtyStart,
    Stderr,
    Stdout,
    Stop,
    StreamMessage,
    parse_pty_request,
)
from hangar.core.capsules.rules import command_argv
from hangar.core.capsules.service import CapsuleService
from hangar.core.errors import DomainError, InvalidInput
from hangar.core.platform import Platform
from hangar.faces.wrenn import ids
from hangar.faces.wrenn.errors import domain_response
from hangar.web.authn import authenticate
from hangar.web.authn.subprotocol import selected_subprotocol
from hangar.web.streams import Close, Frames, pump

router = APIRouter(prefix="/v1/capsules/{id}", tags=["capsules"])
PING_SECONDS = 30.0

Message = dict[str, Any]


async def _open(ws: WebSocket, id: str, kind: str) -> AgentStream | None:
    """Authenticate like the HTTP routes and open the agent stream, or refuse the upgrade."""
    platform: Platform = ws.app.state.platform
    try:
        async with platform.db.unit_of_work() as uow:
            session = uow.session
            principal = await authenticate(ws, session, platform)
            capsules = CapsuleService(session, platform.fleet, platform.settings.capsules)
            stream = await capsules.open_stream(
                principal.require_team(), ids.decode(ids.CAPSULE, id), kind
            )
            await uow.commit()
    except DomainError as exc:
        await ws.send_denial_response(domain_response(ws, exc))
        return None
    # A credential carried in the subprotocol list: accept its marker, never the secret.
    await ws.accept(subprotocol=selected_subprotocol(ws))
    return stream


class _WrennFrames(Frames):
    """Wrenn's clients speak JSON objects; a refused one is told as an `error` frame."""

    async def receive(self, ws: WebSocket) -> Sequence[StreamMessage] | None:
        """The agent messages of the client's next JSON frame."""
        message = await ws.receive_json()
        if not isinstance(message, dict):
            return []
        try:
            return self.translate(message)
        except InvalidInput as exc:  # e.g. an empty `cmd`: told on the stream, then closed
            await ws.send_json({"type": "error", "data": exc.message})
            return None

    def translate(self, message: Message) -> list[StreamMessage]:
        """The agent messages a client message stands for."""
        raise NotImplementedError

    async def failed(self, ws: WebSocket, exc: BaseException) -> None:
        """A broken stream is told to the client; a client that left or spoke garbage is not."""
        if not isinstance(exc, WebSocketDisconnect | ValueError):
            await ws.send_json({"type": "error", "data": "stream failed"})


def _start(build: Callable[[], StreamMessage]) -> StreamMessage:
    """A start message, its client's fields refused as bad input when of the wrong shape."""
    try:
        return build()
    except ValidationError as exc:
        raise InvalidInput("invalid start message") from exc


def _text(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", "replace")


class _ExecFrames(_WrennFrames):
    """One command: `start` and `stop` in; output as text, `start`, `exit` and `error` out."""

    def translate(self, message: Message) -> list[StreamMessage]:
        """The agent messages a client message stands for."""
        kind = message.get("type")
        if kind == "start":
            argv = command_argv(
                str(message.get("cmd") or ""), [str(a) for a in message.get("args") or []]
            )
            return [
                _start(
                    lambda: ProcessStart(
                        argv=argv, env=message.get("envs") or {}, cwd=message.get("cwd")
                    )
                )
            ]
        if kind == "stop":
            return [Stop()]
        return []

    async def send(self, ws: WebSocket, event: AgentEvent) -> Close | None:
        """Output decoded as text; an error only with its message."""
        if isinstance(event, Stdout | Stderr):
            await ws.send_json({"type": event.type, "data": _text(event.data)})
        elif isinstance(event, Error):
            await ws.send_json({"type": "error", "data": event.data})
        else:
            await ws.send_json(event.dump())
        return None


class _PtyFrames(_WrennFrames):
    """A terminal: the agent's PTY messages both ways, Wrenn's `start` fields translated."""

    ping_seconds = PING_SECONDS

    def translate(self, message: Message) -> list[StreamMessage]:
        """The agent messages a client message stands for."""
        kind = message.get("type")
        if kind == "start":
            cmd = str(message.get("cmd") or "/bin/bash")
            argv = [cmd, *[str(a) for a in message.get("args") or []]]
            cols, rows = int(message.get("cols") or 80), int(message.get("rows") or 24)
            env = {"TERM": "xterm-256color", **(message.get("envs") or {})}
            return [
                _start(
                    lambda: PtyStart(
                        argv=argv, cols=cols, rows=rows, env=env, cwd=message.get("cwd")
                    )
                )
            ]
        if kind in ("connect", "input", "resize", "kill"):
            try:
                return [parse_pty_request(message)]
            except InvalidMessage:
                return []  # a malformed one is dropped, like an unknown one
        return []

    async def send(self, ws: WebSocket, event: AgentEvent) -> Close | None:
        """The agent's message as it is, less the agent's error code."""
        message = event.dump()
        message.pop("code", None)
        await ws.send_json(message)
        return None

    async def ping(self, ws: WebSocket) -> None:
        """Wrenn's keep-alive frame."""
        await ws.send_json({"type": "ping"})


@router.websocket("/exec/stream")
async def exec_stream(ws: WebSocket, id: str) -> None:
    """Run one command and stream its output as text."""
    stream = await _open(ws, id, "process")
    if stream is not None:
        await pump(ws, stream, _ExecFrames())


@router.websocket("/pty")
async def pty_session(ws: WebSocket, id: str) -> None:
    """An interactive terminal that survives disconnects (reconnect with its tag)."""
    stream = await _open(ws, id, "pty")
    if stream is not None:
        await pump(ws, stream, _PtyFrames())
