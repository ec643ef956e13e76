"""`/agent/v1/relay/{host_id}/...` on the main port: other replicas' calls into an uplink here.

An uplink ends on the replica the agent dialled (web/agent_uplink.py); every other replica
reaches that agent through this relay (core/fleet/relay.py), with an ordinary agent-protocol
client whose calls and streams are forwarded, unchanged, into the uplink's tunnel. Only a
short-lived relay JWT for this very host is accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hangar.agentproto.client import PROTOCOL_HEADER, AgentError
from hangar.agentproto.tunnel import TunnelSession
from hangar.agentproto.tunnel_http import TunnelTransport, open_stream
from hangar.core.errors import Unauthenticated
from hangar.core.fleet.relay import RELAY_AUDIENCE, RELAY_PREFIX
from hangar.core.platform import Platform
from hangar.web.credentials import parse_bearer
from hangar.web.streams import forward

router = APIRouter(tags=["agents"])

ROUTE = RELAY_PREFIX + "/{host_id}/{path:path}"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Hop-by-hop and relay-only headers: never forwarded to the agent nor back.
_DROPPED = {
    "authorization",
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
}


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _authorized(platform: Platform, authorization: str | None, host_id: str) -> bool:
    token = parse_bearer(authorization)
    if token is None:
        return False
    try:
        claims = platform.signer.verify(token, RELAY_AUDIENCE)
    except Unauthenticated:
        return False
    return claims.get("sub") == host_id


def _tunnel(platform: Platform, host_id: str) -> TunnelSession | None:
    """The uplink of `host_id` if it ends on this replica (never a relayed client: no loops)."""
    handle = platform.fleet.handle(host_id)
    return handle.client.tunnel if handle is not None else None


@router.api_route(ROUTE, methods=METHODS, include_in_schema=False)
async def relay_http(host_id: str, path: str, request: Request) -> Response:
    """Forward one agent-protocol call, bodies streamed both ways."""
    platform: Platform = request.app.state.platform
    if not _authorized(platform, request.headers.get("authorization"), host_id):
        return _refusal(401, "unauthorized", "a relay token for this host is required")
    tunnel = _tunnel(platform, host_id)
    if tunnel is None:
        return _refusal(503, "host_unavailable", f"host {host_id} is not connected here")
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED]
    outgoing = httpx.Request(
        request.method,
        httpx.URL(f"http://agent/{path}", query=request.url.query.encode("ascii")),
        headers=headers,
        content=request.stream(),
    )
    try:
        answer = await TunnelTransport(tunnel).handle_async_request(outgoing)
    except httpx.TransportError as exc:
        return _refusal(502, "agent_unreachable", str(exc) or type(exc).__name__)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:
            await answer.aclose()

    return StreamingResponse(
        body(),
        status_code=answer.status_code,
        headers={k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED},
    )


@router.websocket(ROUTE)
async def relay_stream(ws: WebSocket, host_id: str, path: str) -> None:
    """Forward one process or PTY stream, message by message."""
    platform: Platform = ws.app.state.platform
    if not _authorized(platform, ws.headers.get("authorization"), host_id):
        await ws.send_denial_response(
            _refusal(401, "unauthorized", "a relay token for this host is required")
        )
        return
    tunnel = _tunnel(platform, host_id)
    if tunnel is None:
        await ws.send_denial_response(
            _refusal(503, "host_unavailable", f"host {host_id} is not connected here")
        )
        return
    protocol = ws.headers.get(PROTOCOL_HEADER.lower())
    headers = {PROTOCOL_HEADER: protocol} if protocol else {}
    try:
        stream = await open_stream(tunnel, f"/{path}", headers)
    except AgentError as exc:  # the agent's own refusal, passed on as it gave it
        await ws.send_denial_response(_refusal(exc.status or 502, exc.code, exc.message))
        return
    await ws.accept()
    try:
        await forward(ws, stream)
    finally:
        await stream.close()
        with contextlib.suppress(Exception):
            await ws.close()
