"""`hangar agent --server --token` against `hangar serve`, both real processes on loopback."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.uplink.procs import (
    ControlPlane,
    RemoteAgent,
    capsule_status,
    control_plane,
    create_capsule,
    create_host,
    exercise,
    host_status,
    needs_jail,
    uplink_env,
    wait_joined,
)
from support.live import free_port
from support.processes import wait_until

pytestmark = needs_jail

# Short-lived host JWTs, so the agent's refresh at 80% of their lifetime happens here.
ENV = uplink_env(6, HANGAR_HOSTS__TOKEN_TTL_SECONDS="10")


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    with control_plane(tmp_path / "cp", free_port(), ENV) as plane:
        yield plane


def test_remote_agent_joins_serves_and_survives_restarts(cp: ControlPlane, tmp_path: Path) -> None:
    admin = cp.start_as_admin()
    host_id, token = create_host(cp, admin)
    assert host_status(cp, admin, host_id) == "pending"

    agent = RemoteAgent(tmp_path / "agent", cp.url)
    try:
        agent.start(token)
        wait_joined(cp, admin, agent, host_id)

        creds_file = agent.data_dir / "credentials.json"
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        creds = json.loads(creds_file.read_text())
        assert creds["host_id"] == host_id
        assert creds["keys"]
        assert all("d" not in k for k in creds["keys"])  # public keys only
        assert token not in creds_file.read_text()  # the spent token is not kept
        assert token not in agent.log.read_text()  # nor logged
        assert creds["token"] not in agent.log.read_text()
        assert creds["token"] not in cp.log.read_text()

        capsule = create_capsule(cp, admin)
        exercise(cp, admin, capsule, "one")

        # The spent registration token cannot bring a second agent in.
        intruder = RemoteAgent(tmp_path / "intruder", cp.url)
        intruder.start(token)
        assert intruder.proc is not None
        assert intruder.proc.wait(timeout=120) == 1
        assert "registration refused" in intruder.log.read_text()

        # Restart the agent: stored credentials, no token; its capsule is still there.
        agent.kill()
        agent.start()
        agent.wait_connected(2)
        assert capsule_status(cp, admin, capsule) == "running"
        exercise(cp, admin, capsule, "two")

        # Restart the control plane: the agent dials again with backoff.
        cp.stop()
        cp.start()
        agent.wait_connected(3)
        wait_until("capsule running", lambda: capsule_status(cp, admin, capsule) == "running")
        exercise(cp, admin, capsule, "three")

        # The JWT was refreshed ahead of expiry, and the rotated credentials were kept.
        wait_until("a token refresh", lambda: "agent.token_refreshed" in agent.log.read_text())
        assert json.loads(creds_file.read_text())["refresh_token"] != creds["refresh_token"]
        exercise(cp, admin, capsule, "four")

        with cp.client() as c:
            assert c.delete(f"/v1/capsules/{capsule}", headers=admin).status_code == 204
    finally:
        agent.remove()


def test_unregistered_agent_without_token_stops_with_a_reason(tmp_path: Path) -> None:
    agent = RemoteAgent(
        tmp_path / "agent", "http://127.0.0.1:9", env={"HANGAR_AGENT_RUNTIME": "fake"}
    )
    proc = agent.start()
    assert proc.wait(timeout=120) == 1
    assert "a registration token (--token) is required" in agent.log.read_text()
    assert not (agent.data_dir / "credentials.json").exists()
