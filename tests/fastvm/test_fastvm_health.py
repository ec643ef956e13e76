"""`/fastvm/healthz`: healthy while a regular host is online; tenants' BYOC hosts never count.

A live Hangar without agents whose host rows the tests write directly, and the agent probe
(used when no host row is online) against a real agent and against one that never answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from fastvm.helpers import add_host
from hangar.agentproto.client import AgentClient
from hangar.core.fleet.gateway import AgentHandle
from hangar.core.hosts.models import Host, HostStatus, HostType
from hangar.web.health import any_answers
from support.hosts import db
from support.live import LiveServer
from support.processes import AgentProcess


def set_status(server: LiveServer, host_id: str, status: str) -> None:
    with db(server) as s:
        row = s.get(Host, host_id)
        assert row is not None
        row.status = status


def test_health_counts_only_online_regular_hosts(bare_server: LiveServer) -> None:
    with httpx.Client(base_url=f"{bare_server.url}/fastvm", timeout=30) as fvm:
        none = fvm.get("/healthz")
        assert none.status_code == 503
        assert none.json() == {"error": "no host online"}

        # A tenant's machine is no part of the platform's health.
        add_host(bare_server, HostType.BYOC, HostStatus.ONLINE)
        byoc = fvm.get("/healthz")
        assert byoc.status_code == 503
        assert byoc.json() == {"error": "no host online"}

        regular = add_host(bare_server, HostType.REGULAR, HostStatus.UNREACHABLE)
        assert fvm.get("/healthz").status_code == 503
        set_status(bare_server, regular, HostStatus.ONLINE)
        ok = fvm.get("/healthz")
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"status": "ok", "checks": {"database": "ok", "agents": "ok"}}
        # No credentials needed (the spec's `security: []`), and nothing internal shown.
        assert fvm.get("/readyz").json() == {"status": "ok"}

    # The main port's probe keeps its shape and checks the platform's own dependency only.
    main = httpx.get(f"{bare_server.url}/healthz", timeout=30)
    assert main.json() == {"status": "ok", "checks": {"database": "ok"}}


@pytest.fixture
def silent_address() -> Iterator[str]:
    """An HTTP address that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def probe(addresses: list[str], timeout: float) -> tuple[bool, float]:
    """Whether one of the agents at `addresses` answers within `timeout`; how long it took."""

    async def main() -> bool:
        clients = [AgentClient(address) for address in addresses]
        try:
            handles = [AgentHandle(f"h{i}", c) for i, c in enumerate(clients)]
            return await any_answers(handles, timeout)
        finally:
            for client in clients:
                await client.aclose()

    started = time.monotonic()
    answered = anyio.run(main)
    return answered, time.monotonic() - started


def test_agent_probe_is_parallel_and_bounded(agent: AgentProcess, silent_address: str) -> None:
    # A silent agent costs the timeout, not the agent client's own (30 s) one.
    answered, took = probe([silent_address, silent_address], timeout=1.0)
    assert not answered
    assert took < 10
    # One agent that answers is enough, however many others hang.
    answered, took = probe([silent_address, agent.address, silent_address], timeout=20.0)
    assert answered
    assert took < 15
