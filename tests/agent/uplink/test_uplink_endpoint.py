"""`/agent/v1/connect` and `/agent/v1/keys` on a live control plane, and the agent's checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from hangar.agent.enroll import Credentials, EnrollError, HostAuth, claims_of
from hangar.agent.settings import AgentSettings
from hangar.agent.uplink import ProofRefused, Uplink, backoff, verify_proof
from hangar.agentproto.tunnel import MAX_FRAME, Kind, decode, encode
from hangar.core.security.jwt import TokenSigner, generate_key
from support.hosts import (
    HostApi,
    add_capsule,
    capsule_status,
    host_events,
    make_platform_admin,
    set_host,
)
from support.live import LiveServer
from support.wrenn import Wrenn


def _dial(server: LiveServer, token: str | None, nonce: str | None) -> ClientConnection:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if nonce is not None:
        headers["X-Hangar-Uplink-Nonce"] = nonce
    url = server.url.replace("http", "ws", 1) + "/agent/v1/connect"
    return connect(url, additional_headers=headers, open_timeout=30)


def _registered(server: LiveServer, http: httpx.Client, wrenn: Wrenn) -> dict[str, Any]:
    admin = make_platform_admin(server, wrenn.signup(name="Admin"))
    return HostApi(http).registered(admin)


def _credentials(server: LiveServer, creds: dict[str, Any]) -> Credentials:
    keys = httpx.get(f"{server.url}/agent/v1/keys").json()
    return Credentials(
        server=server.url,
        host_id=creds["host"]["id"],
        subject=str(claims_of(creds["token"])["sub"]),
        token=creds["token"],
        refresh_token=creds["refresh_token"],
        issuer=keys["issuer"],
        keys=keys["keys"],
    )


def _hello(ws: ClientConnection) -> str:
    channel, kind, payload = decode(ws.recv(timeout=30))  # type: ignore[arg-type]
    assert (channel, kind) == (0, Kind.HELLO)
    proof: str = json.loads(payload)["proof"]
    return proof


def _drain(ws: ClientConnection) -> None:
    """Read until the connection closes (pings may come first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ws.recv(timeout=30)


def test_keys_are_public_only(server: LiveServer) -> None:
    body = httpx.get(f"{server.url}/agent/v1/keys").json()
    assert body["issuer"] == server.settings.jwt_issuer
    assert body["keys"]
    for key in body["keys"]:
        assert key["kty"] == "OKP"
        assert "d" not in key  # never the private half


def test_connect_proves_the_control_plane(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn
) -> None:
    creds = _registered(server, http, wrenn)
    pinned = _credentials(server, creds)
    nonce = secrets.token_urlsafe(32)
    with _dial(server, creds["token"], nonce) as ws:
        proof = _hello(ws)
        verify_proof(proof, pinned, nonce)  # the real control plane passes
        with pytest.raises(ProofRefused):
            verify_proof(proof, pinned, secrets.token_urlsafe(32))  # a replayed proof fails
        other_host = Credentials(**{**pinned.__dict__, "subject": "someone-else"})
        with pytest.raises(ProofRefused):
            verify_proof(proof, other_host, nonce)
    # An impostor signing with any other key is refused.
    impostor = TokenSigner([generate_key()], server.settings.jwt_issuer)
    forged = impostor.issue("hangar:uplink", pinned.subject, 60, nonce=nonce)
    with pytest.raises(ProofRefused):
        verify_proof(forged, pinned, nonce)
    # The control plane's user tokens are no proof either (wrong audience).
    with pytest.raises(ProofRefused):
        verify_proof(creds["token"], pinned, nonce)


def test_connect_refusals(server: LiveServer, http: httpx.Client, wrenn: Wrenn) -> None:
    nonce = secrets.token_urlsafe(32)
    for token in (None, "not-a-jwt"):
        with pytest.raises(InvalidStatus) as refused:
            _dial(server, token, nonce)
        assert refused.value.response.status_code == 401
    # A user's JWT is not a host token.
    user = wrenn.signup(name="Mallory")
    with pytest.raises(InvalidStatus) as refused:
        _dial(server, user.token, nonce)
    assert refused.value.response.status_code == 401
    creds = _registered(server, http, wrenn)
    with pytest.raises(InvalidStatus) as refused:  # no nonce: policy violation, not a 500
        _dial(server, creds["token"], None)
    assert refused.value.response.status_code == 403
    # Nor with another protocol version.
    url = server.url.replace("http", "ws", 1) + "/agent/v1/connect"
    headers = {
        "Authorization": f"Bearer {creds['token']}",
        "X-Hangar-Uplink-Nonce": nonce,
        "X-Hangar-Agent-Protocol": "0",
    }
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers, open_timeout=30)
    assert refused.value.response.status_code == 403
    # A deleted host's token no longer connects.
    admin = make_platform_admin(server, wrenn.signup(name="Admin2"))
    gone = HostApi(http).registered(admin)
    deleted = http.delete(f"/v1/hosts/{gone['host']['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    with pytest.raises(InvalidStatus) as refused:  # closed with a policy violation
        _dial(server, gone["token"], nonce)
    assert refused.value.response.status_code == 403


def test_a_pending_host_cannot_connect(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn
) -> None:
    creds = _registered(server, http, wrenn)
    set_host(server, creds["host"]["id"], status="pending")
    with pytest.raises(InvalidStatus) as refused:  # closed with a policy violation
        _dial(server, creds["token"], secrets.token_urlsafe(32))
    assert refused.value.response.status_code == 403


def test_second_connection_replaces_the_first(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn
) -> None:
    creds = _registered(server, http, wrenn)
    with _dial(server, creds["token"], secrets.token_urlsafe(32)) as first:
        _hello(first)
        with _dial(server, creds["token"], secrets.token_urlsafe(32)) as second:
            _hello(second)
            with pytest.raises(ConnectionClosed):
                _drain(first)


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    delays = [backoff(n, 0.5, 30.0) for n in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 2.0 <= delays[3] <= 4.0
    assert all(15.0 <= d <= 30.0 for d in delays[7:])
    assert len({backoff(5, 0.5, 30.0) for _ in range(20)}) > 1  # jittered


async def test_host_auth_refreshes_once_and_keeps_credentials(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn, tmp_path: Path
) -> None:
    creds = _credentials(server, _registered(server, http, wrenn))
    path = tmp_path / "credentials.json"
    async with httpx.AsyncClient() as client:
        auth = HostAuth(client, path, creds)
        old = auth.token
        assert 0 < auth.seconds_until_refresh() <= 0.8 * 7 * 24 * 3600
        # Several callers see the same token refused at once: the refresh token is spent once.
        await asyncio.gather(*(auth.refresh(old) for _ in range(5)))
        assert auth.token != old
        saved = Credentials.load(path)
        assert saved is not None
        assert saved.token == auth.token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        beat = http.post(
            f"/v1/hosts/{creds.host_id}/heartbeat", headers={"X-Host-Token": auth.token}
        )
        assert beat.status_code == 204
        # Someone else spends the agent's refresh token: the agent is told it must re-register.
        assert HostApi(http).refresh(auth.creds.refresh_token).status_code == 200
        with pytest.raises(EnrollError):
            await auth.refresh()


def _until(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_shutdown_goodbye_takes_the_host_offline_at_once(
    server: LiveServer, http: httpx.Client, wrenn: Wrenn
) -> None:
    admin = make_platform_admin(server, wrenn.signup(name="Admin"))
    creds = HostApi(http).registered(admin)
    host_id = creds["host"]["id"]

    def status() -> str:
        r = http.get(f"/v1/hosts/{host_id}", headers=admin.headers)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    with _dial(server, creds["token"], secrets.token_urlsafe(32)) as ws:
        _hello(ws)
        _until("online", lambda: status() == "online")
        capsule = add_capsule(server, host_id, admin.team_id)
        ws.close(1001, "shutdown")  # what `hangar agent` sends when it stops on purpose
    _until("offline", lambda: status() == "offline")
    assert capsule_status(server, capsule) == "missing"
    assert [t for t, _ in host_events(server, host_id)] == ["host.up", "host.down"]

    # Back: connecting is proof of life. A connection that was replaced, or that ends any
    # other way, leaves the host up (the heartbeat timeout judges those).
    with _dial(server, creds["token"], secrets.token_urlsafe(32)) as first:
        _hello(first)
        _until("online again", lambda: status() == "online")
        with _dial(server, creds["token"], secrets.token_urlsafe(32)) as second:
            _hello(second)
            with contextlib.suppress(ConnectionClosed):
                first.close(1001, "shutdown")
            second.close(1000)
    time.sleep(1.0)  # nothing to wait for: the host must simply stay up
    assert status() == "online"
    assert [t for t, _ in host_events(server, host_id)] == ["host.up", "host.down", "host.up"]


async def test_the_agent_refuses_oversized_frames_before_any_proof(tmp_path: Path) -> None:
    """Whoever answers the agent's dial cannot make it buffer a frame of any size."""
    codes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(encode(0, Kind.PING, b"x" * MAX_FRAME))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 20)
        codes.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        settings = AgentSettings(server=f"http://127.0.0.1:{port}", data_dir=tmp_path)
        uplink = Uplink(settings, _no_app, lambda: None)  # type: ignore[arg-type,return-value]
        creds = Credentials(
            server=settings.server or "", host_id="h", subject="s", token="t", refresh_token="r"
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(uplink._connect_once(f"ws://127.0.0.1:{port}/", "t", creds), 60)
        for _ in range(300):
            if codes:
                break
            await asyncio.sleep(0.1)
    assert codes == [1009]  # "message too big", from the agent


async def _no_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("nothing is served before the control plane is proven")
