"""`hangar agent` stopped on purpose (SIGTERM/SIGINT): its host is offline at once, not later.

Real processes on loopback: `hangar serve` and `hangar agent --server` with the jail runtime.
The heartbeat timeout is set far above the waits here, so `offline` can only come from the
agent's shutdown goodbye (a SIGKILL's `unreachable` after the timeout is tested elsewhere).
"""

from __future__ import annotations

import json
import signal
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
    host_status,
    needs_jail,
    uplink_env,
    wait_joined,
)
from support.live import free_port
from support.processes import wait_until

pytestmark = needs_jail

ENV = uplink_env(600)
# Far below the heartbeat timeout, and generous for a loaded machine.
PROMPTLY = 60.0


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    with control_plane(tmp_path / "cp", free_port(), ENV) as plane:
        yield plane


def _host_downs(cp: ControlPlane, host_id: str) -> list[str]:
    """The status of each host.down event about the host, oldest first."""
    rows = cp.rows("SELECT payload FROM outbox_events WHERE type = 'host.down' ORDER BY seq")
    payloads = [json.loads(p) for (p,) in rows]
    return [p["status"] for p in payloads if p["host_id"] == host_id]


def _stop(agent: RemoteAgent, how: signal.Signals) -> None:
    assert agent.proc is not None
    agent.proc.send_signal(how)
    agent.proc.wait(timeout=120)


def test_a_stopped_agent_takes_its_host_offline_at_once(cp: ControlPlane, tmp_path: Path) -> None:
    admin = cp.start_as_admin()
    host_id, token = create_host(cp, admin)
    agent = RemoteAgent(tmp_path / "agent", cp.url)
    try:
        agent.start(token)
        wait_joined(cp, admin, agent, host_id)
        capsule = create_capsule(cp, admin)
        assert capsule_status(cp, admin, capsule) == "running"

        connections = 1
        for how in (signal.SIGTERM, signal.SIGINT):
            _stop(agent, how)
            assert '"uplink.shutdown"' in agent.log.read_text()
            wait_until(
                f"offline after {how.name}",
                lambda: host_status(cp, admin, host_id) == "offline",
                timeout=PROMPTLY,
            )
            assert capsule_status(cp, admin, capsule) == "missing"

            # Back: online again, and the capsule its agent still has is running again.
            agent.start()
            connections += 1
            wait_joined(cp, admin, agent, host_id, connections)
            wait_until("capsule running", lambda: capsule_status(cp, admin, capsule) == "running")
            with cp.client() as c:
                r = c.post(
                    f"/v1/capsules/{capsule}/exec", json={"cmd": "echo $((6*7))"}, headers=admin
                )
                assert r.status_code == 200, r.text
                assert r.json()["stdout"] == "42\n"

        # One host.down per shutdown, each saying offline (never unreachable).
        core_host = cp.rows("SELECT id FROM hosts")[0][0]
        assert _host_downs(cp, core_host) == ["offline", "offline"]
        with cp.client() as c:
            assert c.delete(f"/v1/capsules/{capsule}", headers=admin).status_code == 204
    finally:
        agent.remove()
