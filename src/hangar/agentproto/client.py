"""The control plane's client for one agent (HTTP for calls, WebSocket for streams)."""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
from websockets.asyncio.client import ClientConnection, connect, unix_connect

from hangar.agentproto import VERSION, correlation
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
from hangar.agentproto.streams import AgentEvent, InvalidMessage, StreamMessage, parse_event

if TYPE_CHECKING:
    from hangar.agentproto.tunnel import TunnelSession

PROTOCOL_HEADER = "X-Hangar-Agent-Protocol"
# Told of every call: (operation such as `POST /v1/sandboxes/{id}/exec`, outcome, seconds),
# where the outcome is `ok`, `error` (the agent refused), `unreachable` or `cancelled`.
CallObserver = Callable[[str, str, float], None]
# Wraps every call, e.g. in a trace span (the control plane's OpenTelemetry, when configured):
# given the operation, method, full URL and the request's headers (which it may add trace
# context to), it yields a callback told the answer's HTTP status; a failed call raises through.
CallTracer = Callable[
    [str, str, str, dict[str, str]], AbstractContextManager[Callable[[int], None]]
]
# Ids and names become placeholders, so operations form a small, fixed set.
_NAMED = re.compile(r"^(/v1/(?:sandboxes|templates))/[^/]+")


def operation(method: str, path: str) -> str:
    """The call's method and path template: `GET /v1/sandboxes/{id}`."""
    return method + " " + _NAMED.sub(r"\1/{id}", path)


def _no_status(_: int) -> None:
    """The status callback when no tracer is set."""


class AgentError(Exception):
    """The agent refused or failed an operation; `code` is the agent's stable code."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class AgentUnreachable(AgentError):
    """The agent could not be reached at all."""

    def __init__(self, message: str) -> None:
        super().__init__("agent_unreachable", message)


class AgentStream(ABC):
    """One stream to the agent carrying JSON messages, over whatever connects to it."""

    @abstractmethod
    async def send(self, message: dict[str, Any]) -> None:
        """Send one message."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Messages until the agent closes the stream."""

    @abstractmethod
    async def close(self) -> None:
        """Close the stream."""

    async def put(self, message: StreamMessage) -> None:
        """Send one typed message."""
        await self.send(message.dump())

    async def events(self) -> AsyncIterator[AgentEvent]:
        """The agent's messages, typed, until it closes the stream."""
        async for raw in self:
            try:
                yield parse_event(raw)
            except InvalidMessage:
                continue  # a newer agent's message this control plane has no use for


class WebSocketAgentStream(AgentStream):
    """A stream on its own WebSocket to the agent."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message."""
        await self._ws.send(json.dumps(message))

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Messages until the agent closes the stream."""
        async for raw in self._ws:
            yield json.loads(raw)

    async def close(self) -> None:
        """Close the stream."""
        await self._ws.close()


class AgentClient:
    """Talks protocol v1 to one agent at `address` (`unix:/path` or `http://host:port`).

    `AgentClient.over_tunnel(session)` talks to an agent over the uplink it opened instead.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        tunnel: TunnelSession | None = None,
    ) -> None:
        self.address = address
        self.tunnel = tunnel
        self.observer: CallObserver | None = None
        self.tracer: CallTracer | None = None
        headers = {PROTOCOL_HEADER: VERSION}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._uds: str | None = None
        transport: httpx.AsyncBaseTransport
        if tunnel is not None:
            from hangar.agentproto.tunnel_http import TunnelTransport

            transport = TunnelTransport(tunnel)
            base = "http://agent"
        elif address.startswith("unix:"):
            self._uds = address.removeprefix("unix:")
            transport = httpx.AsyncHTTPTransport(uds=self._uds)
            base = "http://agent"
        else:
            transport = httpx.AsyncHTTPTransport()
            base = address.rstrip("/")
        self._ws_base = base.replace("http", "ws", 1)
        self._http = httpx.AsyncClient(
            base_url=base,
            transport=transport,
            headers=headers,
            timeout=timeout,
            event_hooks={"request": [_with_correlation]},
        )

    @classmethod
    def over_tunnel(cls, session: TunnelSession, *, timeout: float = 30.0) -> AgentClient:
        """A client whose every call and stream is a channel of the agent's uplink."""
        return cls("uplink:", timeout=timeout, tunnel=session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections (and the uplink, for a tunneled agent)."""
        await self._http.aclose()
        if self.tunnel is not None:
            await self.tunnel.close()

    async def _call(
        self, method: str, path: str, *, body: Any = None, timeout: float | None = None, **kw: Any
    ) -> httpx.Response:
        started, outcome = time.perf_counter(), "cancelled"
        op, headers = operation(method, path), dict[str, str]()
        span = (
            self.tracer(op, method, str(self._http.base_url.join(path)), headers)
            if self.tracer is not None
            else nullcontext(_no_status)
        )
        try:
            with span as note_status:
                try:
                    response = await self._http.request(
                        method,
                        path,
                        json=body,
                        headers=headers,
                        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                        **kw,
                    )
                except httpx.TransportError as exc:
                    outcome = "unreachable"
                    raise AgentUnreachable(str(exc) or type(exc).__name__) from exc
                note_status(response.status_code)
                if response.status_code >= 400:
                    outcome = "error"
                    raise _error(response)
            outcome = "ok"
            return response
        finally:
            if self.observer is not None:
                self.observer(op, outcome, time.perf_counter() - started)

    async def info(self) -> AgentInfo:
        """The agent's host facts."""
        return AgentInfo.model_validate((await self._call("GET", "/v1/info")).json())

    async def list_sandboxes(self) -> list[Sandbox]:
        """Every sandbox the agent has."""
        data = (await self._call("GET", "/v1/sandboxes")).json()
        return [Sandbox.model_validate(s) for s in data]

    async def create_sandbox(self, request: CreateSandbox) -> Sandbox:
        """Start a sandbox (may build its template first, which can take minutes)."""
        r = await self._call("POST", "/v1/sandboxes", body=request.model_dump(), timeout=900)
        return Sandbox.model_validate(r.json())

    async def get_sandbox(self, sandbox_id: str) -> Sandbox:
        """One sandbox."""
        r = await self._call("GET", f"/v1/sandboxes/{sandbox_id}")
        return Sandbox.model_validate(r.json())

    async def destroy_sandbox(self, sandbox_id: str) -> None:
        """Destroy a sandbox; idempotent."""
        await self._call("DELETE", f"/v1/sandboxes/{sandbox_id}")

    async def pause(self, sandbox_id: str) -> Sandbox:
        """Freeze a sandbox."""
        r = await self._call("POST", f"/v1/sandboxes/{sandbox_id}/pause")
        return Sandbox.model_validate(r.json())

    async def resume(self, sandbox_id: str) -> Sandbox:
        """Thaw a sandbox."""
        r = await self._call("POST", f"/v1/sandboxes/{sandbox_id}/resume")
        return Sandbox.model_validate(r.json())

    async def set_firewall(self, sandbox_id: str, policy: FirewallPolicy) -> Sandbox:
        """Replace a networked sandbox's inbound firewall policy."""
        r = await self._call(
            "PUT", f"/v1/sandboxes/{sandbox_id}/firewall", body=policy.model_dump()
        )
        return Sandbox.model_validate(r.json())

    async def exec(self, sandbox_id: str, request: ExecRequest) -> ExecResult:
        """Run a command to completion."""
        r = await self._call(
            "POST",
            f"/v1/sandboxes/{sandbox_id}/exec",
            body=request.model_dump(),
            timeout=request.timeout + 30,
        )
        return ExecResult.model_validate(r.json())

    async def metrics(self, sandbox_id: str, tier: str) -> Metrics:
        """One tier of a sandbox's metrics."""
        r = await self._call("GET", f"/v1/sandboxes/{sandbox_id}/metrics", params={"tier": tier})
        return Metrics.model_validate(r.json())

    async def snapshot(self, sandbox_id: str, template: str) -> Template:
        """Save a sandbox's filesystem as a template on the agent's host."""
        r = await self._call(
            "POST",
            f"/v1/sandboxes/{sandbox_id}/snapshot",
            body=SnapshotRequest(template=template).model_dump(),
            timeout=900,
        )
        return Template.model_validate(r.json())

    async def list_templates(self) -> list[Template]:
        """Templates present on the agent's host."""
        data = (await self._call("GET", "/v1/templates")).json()
        return [Template.model_validate(t) for t in data]

    async def delete_template(self, name: str) -> None:
        """Remove a snapshot template's files; idempotent."""
        await self._call("DELETE", f"/v1/templates/{name}")

    async def list_dir(self, sandbox_id: str, path: str, depth: int) -> list[FileEntry]:
        """Directory entries."""
        r = await self._call(
            "POST",
            f"/v1/sandboxes/{sandbox_id}/files/list",
            body=ListRequest(path=path, depth=depth).model_dump(),
        )
        return [FileEntry.model_validate(e) for e in r.json()]

    async def make_dir(self, sandbox_id: str, path: str) -> FileEntry:
        """Create a directory (and parents)."""
        r = await self._call(
            "POST",
            f"/v1/sandboxes/{sandbox_id}/files/mkdir",
            body=PathRequest(path=path).model_dump(),
        )
        return FileEntry.model_validate(r.json())

    async def remove(self, sandbox_id: str, path: str) -> None:
        """Remove a file or a tree."""
        await self._call(
            "POST",
            f"/v1/sandboxes/{sandbox_id}/files/remove",
            body=PathRequest(path=path).model_dump(),
        )

    async def write_file(
        self, sandbox_id: str, path: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> int:
        """Stream a file into the sandbox."""
        try:
            response = await self._http.put(
                f"/v1/sandboxes/{sandbox_id}/files/content",
                params={"path": path, "max_bytes": max_bytes},
                content=chunks,
                timeout=None,
            )
        except httpx.TransportError as exc:
            raise AgentUnreachable(str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            raise _error(response)
        return WriteResult.model_validate(response.json()).size

    async def open_file(self, sandbox_id: str, path: str) -> AsyncFile:
        """Open a file for streaming download; errors are raised before any byte is sent."""
        request = self._http.build_request(
            "GET", f"/v1/sandboxes/{sandbox_id}/files/content", params={"path": path}
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise AgentUnreachable(str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise _error(response)
        return AsyncFile(response)

    async def stream(self, sandbox_id: str, kind: str) -> AgentStream:
        """Open a process (`kind="process"`) or PTY (`kind="pty"`) stream."""
        if self.tunnel is not None:
            from hangar.agentproto.tunnel_http import open_stream

            return await open_stream(
                self.tunnel, f"/v1/sandboxes/{sandbox_id}/{kind}", self._headers
            )
        url = f"{self._ws_base}/v1/sandboxes/{sandbox_id}/{kind}"
        headers = list({**self._headers, **correlation.outgoing()}.items())
        try:
            if self._uds is not None:
                ws = await unix_connect(self._uds, url, additional_headers=headers, max_size=None)
            else:
                ws = await connect(url, additional_headers=headers, max_size=None)
        except OSError as exc:
            raise AgentUnreachable(str(exc)) from exc
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", 0)
            body = getattr(getattr(exc, "response", None), "body", b"") or b""
            raise error_from(status, body) from exc
        return WebSocketAgentStream(ws)


async def _with_correlation(request: httpx.Request) -> None:
    # A hook rather than a header per method: every call, download and upload (and a
    # tunneled one, whose head is built from these headers) carries the caller's id.
    for name, value in correlation.outgoing().items():
        request.headers.setdefault(name, value)


class AsyncFile:
    """A streamed file download from an agent."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, chunk by chunk, then closes."""
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        """Abandon the download."""
        await self._response.aclose()


def _error(response: httpx.Response) -> AgentError:
    return error_from(response.status_code, response.content)


def error_from(status: int, body: bytes) -> AgentError:
    """The AgentError an agent's error answer (`{"code", "message"}`) stands for."""
    try:
        data = json.loads(body)
        return AgentError(str(data["code"]), str(data["message"]), status)
    except (ValueError, KeyError, TypeError):
        return AgentError("agent_error", f"agent answered HTTP {status}", status)
