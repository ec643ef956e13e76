"""The agent's side of protocol v1: HTTP calls and WebSocket streams over its socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import HTTPConnection

from hangar.agent.correlation import CorrelationMiddleware
from hangar.agent.network import AddressesExhausted
from hangar.agent.ptys import PtySession
from hangar.agent.runtimes.base import (
    InvalidRequest,
    InvalidState,
    PathError,
    PathNotFound,
    RuntimeError_,
    SandboxNotFound,
    StartFailed,
    TooLarge,
)
from hangar.agent.service import (
    Agent,
    HostUnhealthy,
    SandboxExists,
    TemplateBuilding,
    TemplateMissing,
)
from hangar.agentproto import VERSION
from hangar.agentproto.client import PROTOCOL_HEADER
from hangar.agentproto.models import (
    AgentInfo,
    CreateSandbox,
    ExecRequest,
    ExecResult,
    FileEntry,
    FirewallPolicy,
    ListRequest,
    Metrics,
    PathRequest,
    Sandbox,
    SnapshotRequest,
    Template,
    WriteResult,
)
from hangar.agentproto.models import FileEntry as WireEntry
from hangar.agentproto.streams import (
    Error,
    Exit,
    Output,
    ProcessStarted,
    PtyStarted,
    Stderr,
    Stdout,
)

_STATUS: dict[type[RuntimeError_], int] = {
    SandboxNotFound: 404,
    TemplateMissing: 404,
    PathNotFound: 404,
    InvalidState: 409,
    SandboxExists: 409,
    PathError: 400,
    InvalidRequest: 400,
    AddressesExhausted: 503,
    HostUnhealthy: 503,
    TemplateBuilding: 503,
    TooLarge: 413,
    StartFailed: 502,
}


def _status(exc: RuntimeError_) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _entry(e: Any) -> WireEntry:
    return WireEntry(
        name=e.name,
        path=e.path,
        type=str(e.type),
        size=e.size,
        mode=e.mode,
        permissions=e.permissions,
        owner=e.owner,
        group=e.group,
        modified_at=e.modified_at,
        symlink_target=e.symlink_target,
    )


async def _finished_unless_disconnected(request: Request, run: asyncio.Future[Any]) -> bool:
    """Wait for `run`; if the HTTP client hangs up first, cancel it and say False."""

    async def disconnected() -> None:
        # The body is read, so the next message is the disconnect: uvicorn sends one when the
        # caller goes, the uplink tunnel one or a ConnectionError (the channel was cancelled).
        # Servers never cancel the handler themselves.
        with contextlib.suppress(ConnectionError):
            while (await request.receive())["type"] != "http.disconnect":
                pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({run, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done() and not watcher.cancelled() and watcher.exception() is not None:
            await run  # nothing to watch with: just finish
    except BaseException:
        run.cancel()
        raise
    finally:
        watcher.cancel()
    if run.done():
        return True
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await run
    return False


def build_agent_app(agent: Agent, *, token: str | None = None) -> FastAPI:
    """The agent's ASGI app."""

    async def authorize(request: HTTPConnection) -> None:
        check(request.headers.get("authorization", ""), request.headers.get(PROTOCOL_HEADER))

    def check(header: str, protocol: str | None) -> None:
        if protocol is not None and protocol != VERSION:
            raise _Refused(400, "protocol_mismatch", f"agent speaks protocol {VERSION}")
        if token is not None and not hmac.compare_digest(
            header.encode(), f"Bearer {token}".encode()
        ):
            raise _Refused(401, "unauthorized", "agent token required")

    app = FastAPI(
        title="Hangar agent",
        version=VERSION,
        dependencies=[Depends(authorize)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.agent = agent
    app.add_middleware(CorrelationMiddleware)

    @app.exception_handler(RuntimeError_)
    async def runtime_error(_: Request, exc: RuntimeError_) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse({"code": "invalid_request", "message": message}, status_code=400)

    @app.exception_handler(_Refused)
    async def refused(_: Request, exc: _Refused) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.get("/v1/info")
    async def info() -> AgentInfo:
        return agent.info()

    @app.get("/v1/sandboxes")
    async def list_sandboxes() -> list[Sandbox]:
        return agent.sandboxes()

    @app.post("/v1/sandboxes", status_code=201)
    async def create(body: CreateSandbox) -> Sandbox:
        return await agent.create(body)

    @app.get("/v1/sandboxes/{sandbox_id}")
    async def get(sandbox_id: str) -> Sandbox:
        return agent.get(sandbox_id)

    @app.delete("/v1/sandboxes/{sandbox_id}", status_code=204)
    async def destroy(sandbox_id: str) -> Response:
        await agent.destroy(sandbox_id)
        return Response(status_code=204)

    @app.post("/v1/sandboxes/{sandbox_id}/pause")
    async def pause(sandbox_id: str) -> Sandbox:
        return await agent.pause(sandbox_id)

    @app.post("/v1/sandboxes/{sandbox_id}/resume")
    async def resume(sandbox_id: str) -> Sandbox:
        return await agent.resume(sandbox_id)

    @app.put("/v1/sandboxes/{sandbox_id}/firewall")
    async def set_firewall(sandbox_id: str, body: FirewallPolicy) -> Sandbox:
        return await agent.set_firewall(sandbox_id, body)

    @app.post("/v1/sandboxes/{sandbox_id}/exec", response_model=ExecResult)
    async def exec_(sandbox_id: str, body: ExecRequest, request: Request) -> ExecResult | Response:
        run = asyncio.ensure_future(
            agent.exec(sandbox_id, body.argv, env=body.env, cwd=body.cwd, timeout=body.timeout)
        )
        if not await _finished_unless_disconnected(request, run):
            # The caller gave up (its client left): cancelling closes the supervisor channel,
            # and the supervisor kills the command's process group when its client vanishes.
            return Response(status_code=499)
        result = run.result()
        return ExecResult(
            exit_code=result.exit_code,
            stdout_b64=base64.b64encode(result.stdout).decode(),
            stderr_b64=base64.b64encode(result.stderr).decode(),
            timed_out=result.timed_out,
            duration_ms=result.duration_ms,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
        )

    @app.get("/v1/sandboxes/{sandbox_id}/metrics")
    async def metrics(
        sandbox_id: str, tier: Annotated[str, Query(pattern="^(10m|2h|24h)$")] = "10m"
    ) -> Metrics:
        return Metrics(
            sandbox_id=sandbox_id,
            tier=tier,
            points=agent.metrics(sandbox_id, tier),
        )

    @app.post("/v1/sandboxes/{sandbox_id}/snapshot", status_code=201)
    async def snapshot(sandbox_id: str, body: SnapshotRequest) -> Template:
        await agent.snapshot(sandbox_id, body.template)
        return next(t for t in agent.templates.list() if t.name == body.template)

    @app.get("/v1/templates")
    async def templates() -> list[Template]:
        return agent.templates.list()

    @app.delete("/v1/templates/{name}", status_code=204)
    async def delete_template(name: str) -> Response:
        agent.templates.delete(name)
        return Response(status_code=204)

    @app.put("/v1/sandboxes/{sandbox_id}/files/content")
    async def write_file(
        sandbox_id: str, request: Request, path: str, max_bytes: Annotated[int, Query(ge=0)]
    ) -> WriteResult:
        size = await agent.write_file(sandbox_id, path, request.stream(), max_bytes=max_bytes)
        return WriteResult(size=size)

    @app.get("/v1/sandboxes/{sandbox_id}/files/content")
    async def read_file(sandbox_id: str, path: str) -> StreamingResponse:
        chunks = agent.read_file(sandbox_id, path)
        # Pull the first chunk now so a missing file is a 404, not a broken stream.
        first = await anext(chunks, b"")

        async def body() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream")

    @app.post("/v1/sandboxes/{sandbox_id}/files/list")
    async def list_dir(sandbox_id: str, body: ListRequest) -> list[FileEntry]:
        entries = await agent.list_dir(sandbox_id, body.path, body.depth)
        return [_entry(e) for e in entries]

    @app.post("/v1/sandboxes/{sandbox_id}/files/mkdir")
    async def make_dir(sandbox_id: str, body: PathRequest) -> FileEntry:
        return _entry(await agent.make_dir(sandbox_id, body.path))

    @app.post("/v1/sandboxes/{sandbox_id}/files/remove", status_code=204)
    async def remove(sandbox_id: str, body: PathRequest) -> Response:
        await agent.remove(sandbox_id, body.path)
        return Response(status_code=204)

    @app.websocket("/v1/sandboxes/{sandbox_id}/process")
    async def process(ws: WebSocket, sandbox_id: str) -> None:
        if not await _accept(ws, check):
            return
        await _serve_process(ws, agent, sandbox_id)

    @app.websocket("/v1/sandboxes/{sandbox_id}/pty")
    async def pty(ws: WebSocket, sandbox_id: str) -> None:
        if not await _accept(ws, check):
            return
        await _serve_pty(ws, agent, sandbox_id)

    return app


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _accept(ws: WebSocket, check: Any) -> bool:
    try:
        check(ws.headers.get("authorization", ""), ws.headers.get(PROTOCOL_HEADER))
    except _Refused as exc:
        await ws.send_denial_response(
            JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)
        )
        return False
    await ws.accept()
    return True


async def _fail(ws: WebSocket, exc: RuntimeError_) -> None:
    await ws.send_json(Error(code=exc.code, data=str(exc), fatal=True).dump())
    await ws.close()


async def _serve_process(ws: WebSocket, agent: Agent, sandbox_id: str) -> None:
    """Stream one process: `start` in, `start`/`stdout`/`stderr`/`exit` out."""
    try:
        first = await ws.receive_json()
        proc = await agent.spawn(
            sandbox_id, list(first["argv"]), env=first.get("env") or {}, cwd=first.get("cwd")
        )
    except RuntimeError_ as exc:
        await _fail(ws, exc)
        return
    except WebSocketDisconnect:
        return
    await ws.send_json(ProcessStarted(pid=proc.pid).dump())

    async def inbound() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await ws.receive_json()
                if message.get("type") == "stop":
                    await proc.kill()
                elif message.get("type") == "stdin":
                    await proc.write_stdin(base64.b64decode(message["data"]))
        await proc.kill()  # the caller went away: don't leave its process behind

    reader = asyncio.create_task(inbound())
    try:
        async for event in proc.events():
            if event.kind == "exit":
                assert event.exit_code is not None  # an exit event always has one
                await ws.send_json(Exit(exit_code=event.exit_code).dump())
            else:
                output = Stderr if event.kind == "stderr" else Stdout
                await ws.send_json(output.of(event.data).dump())
        await ws.close()
    except WebSocketDisconnect:
        await proc.kill()
    finally:
        reader.cancel()


async def _serve_pty(ws: WebSocket, agent: Agent, sandbox_id: str) -> None:
    """Attach to a new or existing terminal; the terminal outlives the connection."""
    try:
        first = await ws.receive_json()
        agent.require_running(sandbox_id)
        session = await _open_session(agent, sandbox_id, first)
    except RuntimeError_ as exc:
        await _fail(ws, exc)
        return
    except WebSocketDisconnect:
        return
    await ws.send_json(PtyStarted(tag=session.tag, pid=session.pty.pid).dump())
    queue = session.attach()

    async def outbound() -> None:
        while True:
            message = await queue.get()
            if "bytes" in message:
                data = message["bytes"]
                assert isinstance(data, bytes)
                message = Output.of(data).dump()
            await ws.send_json(message)
            if message["type"] == "exit" or message.get("fatal"):
                await ws.close()
                return

    writer = asyncio.create_task(outbound())
    try:
        while not writer.done():
            receive = asyncio.create_task(ws.receive_json())
            await asyncio.wait({receive, writer}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                break
            message = receive.result()
            kind = message.get("type")
            if kind == "input":
                session.touch()
                await session.pty.write(base64.b64decode(message.get("data", "")))
            elif kind == "resize":
                session.touch()
                await session.pty.resize(int(message["cols"]), int(message["rows"]))
            elif kind == "kill":
                await session.pty.kill()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        writer.cancel()
        session.detach(queue)


async def _open_session(agent: Agent, sandbox_id: str, first: dict[str, Any]) -> PtySession:
    if first.get("type") == "connect":
        session = agent.ptys.get(sandbox_id, str(first.get("tag", "")))
        if session is None:
            raise SandboxNotFound(f"no PTY session {first.get('tag')!r}")
        return session
    pty = await agent.open_pty(
        sandbox_id,
        list(first.get("argv") or ["/bin/bash"]),
        cols=int(first.get("cols") or 80),
        rows=int(first.get("rows") or 24),
        env=first.get("env") or {},
        cwd=first.get("cwd"),
    )
    return agent.ptys.add(sandbox_id, pty)
