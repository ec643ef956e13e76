"""The VM console: a one-time token, then a WebSocket carrying the VM's login shell.

Frames (see README, "FastVM face"): the server sends the terminal's output as binary frames
of raw bytes. The client sends keystrokes as binary frames of raw bytes, or as text frames
(their UTF-8 bytes); a text frame holding a JSON object `{"type": "resize", "cols": C,
"rows": R}` resizes the terminal instead. When the shell exits the server closes with 1000
and the reason `exit <code>`.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketState

from hangar.agentproto.client import AgentStream
from hangar.agentproto.streams import (
    AgentEvent,
    Error,
    Exit,
    Input,
    Kill,
    Output,
    PtyStart,
    Resize,
    StreamMessage,
)
from hangar.core.capsules.console import LOGIN_SHELL, ConsoleService
from hangar.core.capsules.service import CapsuleService
from hangar.core.errors import (
    DomainError,
    InvalidInput,
    InvalidState,
    Unauthenticated,
    Unavailable,
    UpstreamError,
)
from hangar.core.platform import Platform
from hangar.faces.fastvm import schemas as f
from hangar.faces.fastvm.deps import OrgDep
from hangar.faces.fastvm.errors import documented_as, domain_response, error_response, log
from hangar.faces.fastvm.settings import FastVMSettings
from hangar.web.deps import PlatformDep, SessionDep
from hangar.web.streams import Close, Frames, pump

router = APIRouter(prefix="/v1/vms/{id}", tags=["Console"])
VMId = Annotated[uuid.UUID, Path(alias="id")]
Session = Annotated[str, Query(alias="session")]
MAX_SIZE = 1000  # columns or rows; a terminal beyond it is a mistake, not a window


@router.post("/console-token", response_model=f.ConsoleTokenResponse)
async def console_token(
    id: VMId, org: OrgDep, platform: PlatformDep, session: SessionDep
) -> f.ConsoleTokenResponse:
    """A single-use token for the console WebSocket of a running VM."""
    token, expires_in = await ConsoleService(session, platform.settings.capsules).issue(
        org, str(id)
    )
    # Relative to the face's root (`/fastvm` on the main port, `/` on the face's own port).
    return f.ConsoleTokenResponse(
        token=token,
        expires_in_sec=expires_in,
        websocket_path=f"/v1/vms/{id}/console/ws?session={token}",
    )


@router.get("/console/ws", status_code=426)
async def console_plain_http(
    id: Annotated[str, Path(alias="id")],
    session: Annotated[str | None, Query(alias="session")] = None,
) -> JSONResponse:
    """Any plain HTTP request to the console, whatever its parameters: it must be an upgrade."""
    resp = error_response(426, "upgrade required: connect with a WebSocket client")
    resp.headers["Upgrade"] = "websocket"
    resp.headers["Connection"] = "Upgrade"
    return resp


async def _open(ws: WebSocket, capsule_id: str, token: str) -> AgentStream | None:
    """Redeem the token and start the login shell, or refuse the upgrade with an error."""
    platform: Platform = ws.app.state.platform
    settings: FastVMSettings = ws.app.state.face_settings
    try:
        async with platform.db.unit_of_work() as uow:
            session = uow.session
            try:
                # The spec lists 400 (not 401) for this operation: a bad token is a bad request.
                with documented_as(Unauthenticated, InvalidInput):
                    capsule = await ConsoleService(session, platform.settings.capsules).redeem(
                        capsule_id, token
                    )
            finally:
                # The token is spent here, whatever happens next: also when it was refused
                # because it was presented for another VM.
                await uow.commit()
            capsules = CapsuleService(session, platform.fleet, platform.settings.capsules)
            # No 5xx is listed for the console: a VM whose host is down is in the wrong state.
            with (
                documented_as(Unavailable, InvalidState),
                documented_as(UpstreamError, InvalidState),
            ):
                stream = await capsules.open_stream(capsule.team_id, capsule.id, "pty")
            try:
                await uow.commit()
            except BaseException:
                await _close(stream)
                raise
    except DomainError as exc:
        await ws.send_denial_response(domain_response(ws, exc))
        return None
    return await start_shell(ws, stream, settings)


async def start_shell(
    ws: WebSocket, stream: AgentStream, settings: FastVMSettings
) -> AgentStream | None:
    """Start the login shell and accept the upgrade; on failure close the stream and refuse."""
    try:
        await stream.put(
            PtyStart(
                argv=list(LOGIN_SHELL),
                cols=settings.console_cols,
                rows=settings.console_rows,
                env={"TERM": "xterm-256color"},
            )
        )
        await ws.accept()
    except Exception:
        log.warning("console start failed", exc_info=True)
        await _close(stream)
        await _refuse(ws)
        return None
    return stream


async def _close(stream: AgentStream) -> None:
    """Close an agent stream that is of no more use, whatever state it is in."""
    with contextlib.suppress(Exception):
        await stream.close()


async def _refuse(ws: WebSocket) -> None:
    """Deny the upgrade, or close the socket when no denial can be sent any more."""
    if ws.application_state == WebSocketState.CONNECTING:
        try:
            await ws.send_denial_response(error_response(409, "the console could not be started"))
            return
        except Exception:
            log.info("console denial not sent", exc_info=True)
    with contextlib.suppress(Exception):
        await ws.close(1011, "console failed")


def _control(text: str) -> dict[str, Any] | None:
    """A JSON control message of a text frame, if it is one."""
    if not text.startswith("{"):
        return None
    with contextlib.suppress(ValueError):
        message = json.loads(text)
        if isinstance(message, dict) and message.get("type") == "resize":
            return message
    return None


def _fits(cols: int, rows: int) -> bool:
    return 0 < cols <= MAX_SIZE and 0 < rows <= MAX_SIZE


class _ConsoleFrames(Frames):
    """Raw terminal bytes both ways as binary frames; the shell's end as the close."""

    ended = Close(1000, "closed")

    async def receive(self, ws: WebSocket) -> Sequence[StreamMessage] | None:
        """Keystrokes, or a resize, from the client's next frame."""
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        data: bytes | None = message.get("bytes")
        text: str | None = message.get("text")
        if text is not None:
            control = _control(text)
            if control is not None:
                cols, rows = control.get("cols"), control.get("rows")
                if isinstance(cols, int) and isinstance(rows, int) and _fits(cols, rows):
                    return [Resize(cols=cols, rows=rows)]
                return []
            data = text.encode()
        return [Input.of(data)] if data else []

    async def send(self, ws: WebSocket, event: AgentEvent) -> Close | None:
        """Terminal output as bytes; the shell's exit or a failure closes."""
        if isinstance(event, Output):
            await ws.send_bytes(event.raw())
        elif isinstance(event, Exit):
            return Close(1000, f"exit {event.exit_code}")
        elif isinstance(event, Error):
            return Close(1011, (event.data or "console failed")[:120])
        return None

    async def finish(self, stream: AgentStream) -> None:
        """The shell is the console's only process: leaving kills it rather than orphaning it."""
        with contextlib.suppress(Exception):
            await stream.put(Kill())


@router.websocket("/console/ws")
async def console_ws(ws: WebSocket, id: VMId, session: Session) -> None:
    """The VM's login shell on a PTY, over a WebSocket."""
    stream = await _open(ws, str(id), session)
    if stream is not None:
        await pump(ws, stream, _ConsoleFrames())
