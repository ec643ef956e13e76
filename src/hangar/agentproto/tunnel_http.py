"""The control plane's side of the uplink: httpx requests and agent streams over channels."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hangar.agentproto import correlation
from hangar.agentproto.client import AgentStream, AgentUnreachable, error_from
from hangar.agentproto.tunnel import Channel, ChannelCancelled, Kind, TunnelClosed, TunnelSession


def _timeout(request: httpx.Request, key: str) -> float | None:
    value = request.extensions.get("timeout", {}).get(key)
    return float(value) if value is not None else None


def _head(request: httpx.Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.url.raw_path.decode("ascii"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
    }


class TunnelResponseStream(httpx.AsyncByteStream):
    """A response body read from a channel; closing it early cancels the channel."""

    def __init__(self, channel: Channel, read_timeout: float | None) -> None:
        self._channel = channel
        self._timeout = read_timeout
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Body chunks until END."""
        while not self._ended:
            try:
                frame = await self._channel.receive(self._timeout)
            except TimeoutError as exc:
                raise httpx.ReadTimeout("no data from the agent in time") from exc
            except TunnelClosed as exc:
                raise httpx.ReadError(str(exc)) from exc
            if frame.kind == Kind.DATA:
                yield frame.payload
            elif frame.kind == Kind.END:
                self._ended = True
            elif frame.kind == Kind.CANCEL:
                raise httpx.ReadError(f"the agent abandoned the response: {frame.payload!r}")

    async def aclose(self) -> None:
        """Release the channel (cancelling it when the body was not read to the end)."""
        self._channel.release()


class TunnelTransport(httpx.AsyncBaseTransport):
    """Sends each request on its own channel of an uplink."""

    def __init__(self, session: TunnelSession) -> None:
        self.session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Head, body (flow controlled), then the response head; the body streams after."""
        try:
            channel = self.session.open()
        except TunnelClosed as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        try:
            await channel.send_head(Kind.OPEN_HTTP, _head(request))
            try:
                assert isinstance(request.stream, httpx.AsyncByteStream)
                async for chunk in request.stream:
                    if chunk:
                        await channel.send_data(chunk)
                await channel.send_end()
            except ChannelCancelled:
                pass  # the agent answered without reading everything (e.g. too large)
            while True:
                try:
                    frame = await channel.receive(_timeout(request, "read"))
                except TimeoutError as exc:
                    raise httpx.ReadTimeout("the agent did not answer in time") from exc
                if frame.kind == Kind.RESPONSE:
                    break
                if frame.kind == Kind.CANCEL:
                    raise httpx.RemoteProtocolError("the agent abandoned the request")
        except TunnelClosed as exc:
            channel.release()
            raise httpx.ReadError(str(exc), request=request) from exc
        except BaseException:
            channel.release()  # cancelled or the body failed: the agent's handler is told
            raise
        head = frame.json()
        return httpx.Response(
            int(head["status"]),
            headers=[(k, v) for k, v in head.get("headers", [])],
            stream=TunnelResponseStream(channel, _timeout(request, "read")),
            request=request,
        )

    async def aclose(self) -> None:
        """Nothing pooled: the uplink's lifetime is its connection's."""


class TunnelAgentStream(AgentStream):
    """A process or PTY stream on one channel of an uplink."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message (waits while the agent is behind)."""
        try:
            await self._channel.send_message(json.dumps(message))
        except (TunnelClosed, ChannelCancelled) as exc:
            raise AgentUnreachable(str(exc)) from exc

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Messages until the agent closes the stream."""
        while True:
            try:
                frame = await self._channel.receive()
            except TunnelClosed as exc:
                raise AgentUnreachable(str(exc)) from exc
            if frame.kind in (Kind.TEXT, Kind.BINARY):
                yield json.loads(frame.payload)
            elif frame.kind == Kind.CLOSE:
                return
            elif frame.kind == Kind.CANCEL:
                raise AgentUnreachable("the agent abandoned the stream")

    async def close(self) -> None:
        """Close the stream."""
        if not self._channel.local_done and not self._channel.session.closed:
            with contextlib.suppress(TunnelClosed, ChannelCancelled):
                await self._channel.send_head(Kind.CLOSE, {"code": 1000, "reason": ""})
        self._channel.release()


async def open_stream(
    session: TunnelSession, path: str, headers: dict[str, str], timeout: float = 60.0
) -> TunnelAgentStream:
    """Open a WebSocket stream on a new channel; the agent's refusal is raised as AgentError."""
    headers = {**correlation.outgoing(), **headers}  # the caller's id, unless it sent one
    try:
        channel = session.open()
    except TunnelClosed as exc:
        raise AgentUnreachable(str(exc)) from exc
    try:
        await channel.send_head(
            Kind.OPEN_WS, {"path": path, "headers": [[k, v] for k, v in headers.items()]}
        )
        frame = await channel.receive(timeout)
        while frame.kind not in (Kind.RESPONSE, Kind.CANCEL):
            frame = await channel.receive(timeout)
        if frame.kind == Kind.CANCEL:
            raise AgentUnreachable("the agent abandoned the stream")
        status = int(frame.json()["status"])
        if status == 101:
            return TunnelAgentStream(channel)
        body = b""
        while (frame := await channel.receive(timeout)).kind == Kind.DATA:
            body += frame.payload
        channel.release()
        raise error_from(status, body)
    except (TunnelClosed, TimeoutError, ChannelCancelled) as exc:
        channel.release()
        raise AgentUnreachable(str(exc) or "the agent did not answer in time") from exc
    except BaseException:
        channel.release()
        raise
