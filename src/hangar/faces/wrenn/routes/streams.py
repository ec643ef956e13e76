"""WebSocket streams: `/v1/capsules/{id}/exec/stream` and `/v1/capsules/{id}/pty`.

The face only translates Wrenn's messages to the agent protocol and back; the agent owns
the processes, PTY sessions, their replay buffers and inactivity timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from hangar.agentproto.client import AgentStream
from hangar.core.capsules.rules import command_argv
from hangar.core.capsules.service import CapsuleService
from hangar.core.errors import DomainError, InvalidInput
from hangar.core.platform import Platform
from hangar.faces.wrenn import ids
from hangar.faces.wrenn.errors import domain_response
from hangar.web.auth import authenticate_key_or_user

router = APIRouter(prefix="/v1/capsules/{id}", tags=["capsules"])
PING_SECONDS = 30.0

Message = dict[str, Any]


async def _open(ws: WebSocket, id: str, kind: str) -> AgentStream | None:
    """Authenticate like the HTTP routes and open the agent stream, or refuse the upgrade."""
    platform: Platform = ws.app.state.platform
    try:
        async with platform.db.session() as session:
            principal = await authenticate_key_or_user(ws, session, platform)
            capsules = CapsuleService(session, platform.fleet, platform.settings.capsules)
            stream = await capsules.open_stream(
                principal.require_team(), ids.decode(ids.CAPSULE, id), kind
            )
            await session.commit()
    except DomainError as exc:
        await ws.send_denial_response(domain_response(ws, exc))
        return None
    await ws.accept()
    return stream


async def _pipe(
    ws: WebSocket,
    stream: AgentStream,
    inbound: Callable[[Message], Message | None],
    outbound: Callable[[Message], Message | None],
    *,
    ping: bool,
) -> None:
    """Copy messages both ways until either side ends."""

    async def client_to_agent() -> None:
        while True:
            message = await ws.receive_json()
            try:
                translated = inbound(message) if isinstance(message, dict) else None
            except InvalidInput as exc:  # e.g. an empty `cmd`: told on the stream, then closed
                await ws.send_json({"type": "error", "data": exc.message})
                return
            if translated is not None:
                await stream.send(translated)

    async def agent_to_client() -> None:
        async for message in stream:
            translated = outbound(message)
            if translated is not None:
                await ws.send_json(translated)

    async def pinger() -> None:
        while True:
            await asyncio.sleep(PING_SECONDS)
            await ws.send_json({"type": "ping"})

    tasks = [asyncio.create_task(client_to_agent()), asyncio.create_task(agent_to_client())]
    if ping:
        tasks.append(asyncio.create_task(pinger()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | ValueError):
                with contextlib.suppress(Exception):
                    await ws.send_json({"type": "error", "data": "stream failed"})
    finally:
        for task in tasks:
            task.cancel()
        await stream.close()
        with contextlib.suppress(Exception):
            await ws.close()


def _text(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", "replace")


@router.websocket("/exec/stream")
async def exec_stream(ws: WebSocket, id: str) -> None:
    """Run one command and stream its output as text."""
    stream = await _open(ws, id, "process")
    if stream is None:
        return

    def inbound(m: Message) -> Message | None:
        if m.get("type") == "start":
            argv = command_argv(str(m.get("cmd") or ""), [str(a) for a in m.get("args") or []])
            return {"type": "start", "argv": argv, "env": m.get("envs") or {}, "cwd": m.get("cwd")}
        if m.get("type") == "stop":
            return {"type": "stop"}
        return None

    def outbound(m: Message) -> Message | None:
        kind = m.get("type")
        if kind in ("stdout", "stderr"):
            return {"type": kind, "data": _text(str(m.get("data", "")))}
        if kind == "error":
            return {"type": "error", "data": m.get("data", "")}
        return m

    await _pipe(ws, stream, inbound, outbound, ping=False)


@router.websocket("/pty")
async def pty_session(ws: WebSocket, id: str) -> None:
    """An interactive terminal that survives disconnects (reconnect with its tag)."""
    stream = await _open(ws, id, "pty")
    if stream is None:
        return

    def inbound(m: Message) -> Message | None:
        kind = m.get("type")
        if kind == "start":
            cmd = str(m.get("cmd") or "/bin/bash")
            env = {"TERM": "xterm-256color", **(m.get("envs") or {})}
            return {
                "type": "start",
                "argv": [cmd, *[str(a) for a in m.get("args") or []]],
                "cols": int(m.get("cols") or 80),
                "rows": int(m.get("rows") or 24),
                "env": env,
                "cwd": m.get("cwd"),
            }
        if kind in ("connect", "input", "resize", "kill"):
            return m
        return None

    def outbound(m: Message) -> Message | None:
        m.pop("code", None)
        return m

    await _pipe(ws, stream, inbound, outbound, ping=True)
