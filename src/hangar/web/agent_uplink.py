"""`/agent/v1/*` on the main port: the uplink agents open to the control plane, and its keys.

An agent behind NAT cannot be dialled, so it dials here once (`hangar agent --server`) and
keeps the connection: every agent-protocol call and stream to it is a channel of that one
WebSocket. The agent proves itself with its host JWT; the control plane answers with a
short-lived JWT over the agent's nonce, which the agent checks against the public keys it
pinned when it registered (`GET /agent/v1/keys`).
"""

from __future__ import annotations

import contextlib
import re

import structlog
from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.agentproto import VERSION
from hangar.agentproto.client import PROTOCOL_HEADER, AgentClient
from hangar.agentproto.tunnel import TunnelSession
from hangar.core.capsules.service import CapsuleService
from hangar.core.db.uow import checkpoint
from hangar.core.errors import DomainError, Unauthenticated
from hangar.core.fleet.gateway import AgentHandle
from hangar.core.hosts import presence
from hangar.core.hosts.service import HostService
from hangar.core.platform import Platform
from hangar.core.security.jwt import load_or_create_keys
from hangar.web.credentials import parse_bearer
from hangar.web.deps import PlatformDep

router = APIRouter(tags=["agents"])
log = structlog.get_logger("hangar.web.agent_uplink")

UPLINK_AUDIENCE = "hangar:uplink"
NONCE_HEADER = "x-hangar-uplink-nonce"
PROOF_TTL_SECONDS = 60
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
POLICY_VIOLATION = 1008
# How an agent says it is stopping on purpose (`hangar agent` on SIGTERM/SIGINT): its host
# goes offline at once instead of unreachable after the heartbeat timeout.
GOING_AWAY = 1001
SHUTDOWN_REASON = "shutdown"


def public_keys(platform: Platform) -> list[dict[str, object]]:
    """The public halves of the token-signing keys (the first one signs)."""
    settings = platform.settings
    keys = load_or_create_keys(
        [k.get_secret_value() for k in settings.jwt_signing_keys], settings.data_dir
    )
    return [dict(k.as_dict(private=False)) for k in keys]


@router.get("/agent/v1/keys")
async def agent_keys(platform: PlatformDep) -> dict[str, object]:
    """The issuer and public JWKs an agent pins to recognise this control plane."""
    return {"issuer": platform.settings.jwt_issuer, "keys": public_keys(platform)}


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


@router.websocket("/agent/v1/connect")
async def agent_connect(ws: WebSocket) -> None:
    """Authenticate the host, prove ourselves, then carry its channels until it goes."""
    platform: Platform = ws.app.state.platform
    token = parse_bearer(ws.headers.get("authorization"))
    nonce = ws.headers.get(NONCE_HEADER, "")
    if token is None:
        await ws.send_denial_response(_refuse(401, "unauthorized", "host token required"))
        return
    if not _NONCE.fullmatch(nonce):
        await ws.close(POLICY_VIOLATION, "a fresh nonce is required")
        return
    if ws.headers.get(PROTOCOL_HEADER, VERSION) != VERSION:
        await ws.close(POLICY_VIOLATION, f"the control plane speaks agent protocol {VERSION}")
        return
    try:
        async with platform.db.session() as session:
            host = await _hosts(platform, session).connect(token)
            await checkpoint(session)
            host_id = host.id
    except Unauthenticated:
        # 401 (not a close) so the agent knows to refresh its token and try again.
        await ws.send_denial_response(_refuse(401, "unauthorized", "invalid or expired token"))
        return
    except DomainError as exc:
        log.warning("uplink.refused", reason=exc.code)
        await ws.close(POLICY_VIOLATION, exc.message[:120])
        return
    await ws.accept()

    async def send(frame: bytes) -> None:
        await ws.send_bytes(frame)

    goodbye: list[tuple[object, object]] = []

    async def receive() -> bytes | None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            goodbye.append((message.get("code"), message.get("reason")))
            return None
        data = message.get("bytes")
        return data if isinstance(data, bytes) else b""

    async def close() -> None:
        with contextlib.suppress(Exception):
            await ws.close(1001)

    tunnel = TunnelSession(send, receive, close)
    proof = platform.signer.issue(UPLINK_AUDIENCE, host_id, PROOF_TTL_SECONDS, nonce=nonce)
    client = AgentClient.over_tunnel(tunnel)
    previous = next((h for h in platform.fleet.hosts() if h.host_id == host_id), None)
    try:
        await tunnel.send_hello({"proof": proof})
        platform.fleet.add(AgentHandle(host_id, client))
        if previous is not None:  # a second connection replaces the first
            await previous.client.aclose()
        # The other replicas relay their calls to this host through us from now.
        await presence.connected(platform.db, host_id, platform.fleet.replica_url)
        log.info("uplink.connected", host_id=host_id)
        await tunnel.run()
    finally:
        # A replaced connection is no longer the host's: its goodbye says nothing of the host.
        current = platform.fleet.remove(host_id, client)
        await client.aclose()
        if current:
            await presence.disconnected(platform.db, host_id, platform.fleet.replica_url)
        log.info("uplink.disconnected", host_id=host_id)
        if current and goodbye == [(GOING_AWAY, SHUTDOWN_REASON)]:
            await _shut_down(platform, host_id)


def _hosts(platform: Platform, session: AsyncSession) -> HostService:
    capsules = CapsuleService(session, platform.fleet, platform.settings.capsules)
    return HostService(session, platform.signer, platform.settings.hosts, capsules)


async def _shut_down(platform: Platform, host_id: str) -> None:
    """The agent stopped on purpose: its host is offline and its capsules missing, now."""
    try:
        async with platform.db.session() as session:
            missing = await _hosts(platform, session).agent_stopped(host_id)
            await checkpoint(session)
    except Exception:  # the heartbeat timeout still takes it down
        log.exception("uplink.offline_failed", host_id=host_id)
        return
    if missing is not None:
        log.info("host.down", host_id=host_id, status="offline", capsules_missing=len(missing))
