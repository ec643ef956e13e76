"""Several `hangar serve` replicas on one PostgreSQL database, one uplink agent dialling one of
them: every replica reaches the agent, relaying through the replica that holds the uplink."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from agent.uplink.procs import (
    ControlPlane,
    RemoteAgent,
    capsule_status,
    control_plane,
    create_capsule,
    create_host,
    exercise,
    needs_jail,
    uplink_env,
    wait_joined,
)
from hangar.core.fleet.relay import RELAY_AUDIENCE, relay_url
from hangar.core.ids import new_id
from hangar.core.security.jwt import TokenSigner, generate_key, load_or_create_keys
from hangar.faces.wrenn import ids
from support.live import free_port, fresh_postgres_database
from support.processes import wait_until

pytestmark = [needs_jail, pytest.mark.postgres]


def uplink_owner(database_url: str, host_id: str) -> str | None:
    """The replica the host row says holds the host's uplink."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT uplink_replica FROM hosts WHERE id = :id"), {"id": host_id}
            ).one()
            return row[0] if row[0] is None else str(row[0])
    finally:
        engine.dispose()


def assert_relay_refuses(cp: ControlPlane, host_id: str, signer: TokenSigner) -> None:
    """Only a relay token for this very host, signed with the platform keys, gets through."""
    forger = TokenSigner([generate_key()], "hangar")
    refused = {
        "no token": None,
        "not a JWT": "not-a-token",
        "another signer": forger.issue(RELAY_AUDIENCE, host_id, 60),
        "another audience": signer.issue("hangar:host", host_id, 60),
        "another host": signer.issue(RELAY_AUDIENCE, new_id(), 60),
        "expired": signer.issue(RELAY_AUDIENCE, host_id, -120),
    }
    base = relay_url(cp.url, host_id)
    for why, token in refused.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.get(f"{base}/v1/info", headers=headers, timeout=60)
        assert r.status_code == 401, (why, r.text)
        assert r.json()["code"] == "unauthorized"
        r = httpx.post(f"{base}/v1/sandboxes", headers=headers, json={}, timeout=60)
        assert r.status_code == 401, (why, r.text)
        ws_url = f"{base}/v1/sandboxes/x/pty".replace("http", "ws", 1)
        with pytest.raises(InvalidStatus) as refusal:
            connect(ws_url, additional_headers=headers, open_timeout=60).close()
        assert refusal.value.response.status_code == 401, why
    # The right token does get through, to the agent itself.
    good = signer.issue(RELAY_AUDIENCE, host_id, 60)
    r = httpx.get(f"{base}/v1/info", headers={"Authorization": f"Bearer {good}"}, timeout=60)
    assert r.status_code == 200, r.text
    log = cp.log.read_text()
    assert good not in log
    assert all(t not in log for t in refused.values() if t and t != "not-a-token")


def test_a_replica_reaches_an_agent_connected_to_another(tmp_path: Path) -> None:
    key = json.dumps(generate_key().as_dict(private=True))
    with fresh_postgres_database() as database_url:
        env = uplink_env(
            30,
            HANGAR_DATABASE_URL=database_url,
            HANGAR_JWT_SIGNING_KEYS=json.dumps([key]),  # every replica signs and verifies alike
        )
        with (
            control_plane(tmp_path / "a", free_port(), env) as a,
            control_plane(tmp_path / "b", free_port(), env) as b,
        ):
            admin = a.start_as_admin()
            b.start()
            wire_host, token = create_host(b, admin)
            host_id = ids.decode(ids.HOST, wire_host)
            agent = RemoteAgent(tmp_path / "agent", a.url)
            try:
                agent.start(token)
                wait_joined(b, admin, agent, wire_host)
                wait_until("presence", lambda: uplink_owner(database_url, host_id) == a.url)

                # Everything through B, which has no uplink: placed on the host, relayed via A.
                capsule = create_capsule(b, admin)
                assert capsule_status(b, admin, capsule) == "running"
                exercise(b, admin, capsule, "relayed")
                exercise(a, admin, capsule, "direct")

                # B does not hold the uplink, so its own relay does not serve it.
                signer = TokenSigner(load_or_create_keys([key], tmp_path), "hangar")
                good = {"Authorization": f"Bearer {signer.issue(RELAY_AUDIENCE, host_id, 60)}"}
                r = httpx.get(f"{relay_url(b.url, host_id)}/v1/info", headers=good, timeout=60)
                assert r.status_code == 503, r.text
                assert_relay_refuses(a, host_id, signer)

                with b.client() as c:
                    r = c.delete(f"/v1/capsules/{capsule}", headers=admin)
                    assert r.status_code == 204, r.text

                # The agent goes: the row no longer names A, and B says so instead of relaying.
                agent.kill()
                wait_until("presence cleared", lambda: uplink_owner(database_url, host_id) is None)
            finally:
                agent.remove()
