"""Issue 4's must-show: a control plane and two agents, each in its own network namespace.

Namespaces `cp`, `a1` and `a2` are joined by veth pairs with addresses assigned here
(10.231.0.0/16, /30 links); each has loopback and its links only, and the control plane does
not route, so an agent can reach nothing but the control plane. This test process reaches
the control plane over one more link from its own namespace. Agents run under
`nsenter --net` (not `ip netns exec`, whose private mount namespace would hide the jail
runtime's overlay mounts from a restarted agent).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.uplink.procs import (
    RemoteAgent,
    capsule_status,
    control_plane,
    create_capsule,
    create_host,
    exercise,
    host_status,
    uplink_env,
    wait_joined,
)
from hangar.faces.wrenn import ids
from support.jail_agent import jail_unavailable
from support.processes import wait_until

HEARTBEAT_TIMEOUT = 4.0
RECONCILE = 1.0
PORT = 18080


def _netns_unavailable() -> str | None:
    reason = jail_unavailable()
    if reason:
        return reason
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return "`ip` (iproute2) and `nsenter` are needed for network namespaces"
    probe = f"hgprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


pytestmark = pytest.mark.skipif(_netns_unavailable() is not None, reason=str(_netns_unavailable()))


def ip(*args: str, ns: str | None = None) -> None:
    prefix = ["nsenter", f"--net=/run/netns/{ns}"] if ns else []
    done = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"


@dataclass
class Net:
    cp: str
    a1: str
    a2: str
    root_link: str

    def prefix(self, ns: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}"]


@pytest.fixture
def net() -> Iterator[Net]:
    tag = uuid.uuid4().hex[:5]
    n = Net(f"hg-cp-{tag}", f"hg-a1-{tag}", f"hg-a2-{tag}", f"hgr{tag}")
    try:
        for ns in (n.cp, n.a1, n.a2):
            ip("netns", "add", ns)
            ip("link", "set", "lo", "up", ns=ns)
        # this process <-> control plane
        ip("link", "add", n.root_link, "type", "veth", "peer", "name", f"hgc{tag}")
        ip("link", "set", f"hgc{tag}", "netns", n.cp)
        ip("addr", "add", "10.231.0.1/30", "dev", n.root_link)
        ip("link", "set", n.root_link, "up")
        ip("addr", "add", "10.231.0.2/30", "dev", f"hgc{tag}", ns=n.cp)
        ip("link", "set", f"hgc{tag}", "up", ns=n.cp)
        # each agent <-> control plane
        for i, ns in ((1, n.a1), (2, n.a2)):
            plane_end, agent_end = f"hg{i}c{tag}", f"hg{i}a{tag}"
            ip("link", "add", plane_end, "type", "veth", "peer", "name", agent_end)
            ip("link", "set", plane_end, "netns", n.cp)
            ip("link", "set", agent_end, "netns", ns)
            ip("addr", "add", f"10.231.{i}.1/30", "dev", plane_end, ns=n.cp)
            ip("link", "set", plane_end, "up", ns=n.cp)
            ip("addr", "add", f"10.231.{i}.2/30", "dev", agent_end, ns=ns)
            ip("link", "set", agent_end, "up", ns=ns)
        yield n
    finally:
        subprocess.run(["ip", "link", "del", n.root_link], capture_output=True, check=False)
        for ns in (n.cp, n.a1, n.a2):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_two_agents_in_namespaces_failover_and_return(net: Net, tmp_path: Path) -> None:
    agents = [
        RemoteAgent(tmp_path / "agent1", f"http://10.231.1.1:{PORT}", prefix=net.prefix(net.a1)),
        RemoteAgent(tmp_path / "agent2", f"http://10.231.2.1:{PORT}", prefix=net.prefix(net.a2)),
    ]
    with contextlib.ExitStack() as cleanup:
        cp = cleanup.enter_context(
            control_plane(
                tmp_path / "cp",
                PORT,
                uplink_env(HEARTBEAT_TIMEOUT, HANGAR_HOSTS__RECONCILE_SECONDS=str(RECONCILE)),
                listen="0.0.0.0",  # noqa: S104 - inside its namespace: loopback and its links only
                reach="10.231.0.2",
                prefix=net.prefix(net.cp),
            )
        )
        for agent in agents:
            cleanup.callback(agent.remove)
        admin = cp.start_as_admin()
        hosts = []
        for agent in agents:
            host_id, token = create_host(cp, admin)
            hosts.append(host_id)
            agent.start(token)
        for agent, host_id in zip(agents, hosts, strict=True):
            wait_joined(cp, admin, agent, host_id)

        # Least-loaded placement spreads capsules over both hosts.
        core_hosts = [ids.decode(ids.HOST, h) for h in hosts]
        on_host: dict[str, list[str]] = {h: [] for h in core_hosts}
        for _ in range(6):
            capsule = create_capsule(cp, admin)
            on_host[cp.capsule_hosts()[capsule]].append(capsule)
            if all(on_host.values()):
                break
        assert all(on_host.values()), on_host
        first, second = on_host[core_hosts[0]][0], on_host[core_hosts[1]][0]
        exercise(cp, admin, first, "a1")
        exercise(cp, admin, second, "a2")

        # Agent 1 dies (SIGKILL: no goodbye, so `unreachable`, not `offline`): its host goes
        # down within the threshold, its capsules go missing.
        agents[0].kill()
        killed = time.monotonic()
        wait_until(
            "host 1 unreachable",
            lambda: host_status(cp, admin, hosts[0]) == "unreachable",
            timeout=HEARTBEAT_TIMEOUT + 30,
        )
        # Threshold + one reconcile pass, plus slack for a loaded machine and the API calls.
        assert time.monotonic() - killed < HEARTBEAT_TIMEOUT + RECONCILE + 10
        for capsule in on_host[core_hosts[0]]:
            wait_until("missing", lambda c=capsule: capsule_status(cp, admin, c) == "missing")
        assert host_status(cp, admin, hosts[1]) == "online"
        assert capsule_status(cp, admin, second) == "running"
        exercise(cp, admin, second, "a2-alone")

        # It comes back (stored credentials): host online, its capsules found running.
        agents[0].start()
        wait_joined(cp, admin, agents[0], hosts[0], connections=2)
        for capsule in on_host[core_hosts[0]]:
            wait_until("running", lambda c=capsule: capsule_status(cp, admin, c) == "running")
        exercise(cp, admin, first, "a1-back")

        with cp.client() as c:
            for capsules in on_host.values():
                for capsule in capsules:
                    assert c.delete(f"/v1/capsules/{capsule}", headers=admin).status_code == 204
