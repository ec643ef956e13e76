"""A real agent process with the jail runtime (support/jail_agent.py), and a control plane
that uses it, with a receiver standing in for notification providers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hangar.server.settings import Settings
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer
from support.processes import AgentProcess
from support.receiver import Receiver, running_receiver
from support.wrenn import Account, Wrenn

agent = jail_agent.agent  # the jail agent fixture, one per backend


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """Stands in for every notification provider (Telegram's API base URL points here)."""
    with running_receiver() as r:
        yield r


@pytest.fixture(scope="session")
def capsule_server(
    backend: str,
    agent: AgentProcess,
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    def configure(settings: Settings) -> None:
        settings.capsules.max_file_bytes = 8 * 1024 * 1024
        settings.channels.telegram_api_url = f"{receiver.url}/telegram"
        # The receiver stands in for public providers on loopback: allowed explicitly.
        settings.outbound.allow = ["127.0.0.0/8"]
        settings.channels.backoff_base_seconds = 0.2
        settings.channels.poll_seconds = 0.1

    data_dir = tmp_path_factory.mktemp(f"hangar-capsules-{backend}")
    with serve_on_agent(backend, data_dir, agent, configure) as live:
        yield live


@pytest.fixture
def capi(capsule_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=capsule_server.wrenn_url, timeout=300.0) as client:
        yield client


@pytest.fixture
def owner(capi: httpx.Client) -> Account:
    return Wrenn(capi).signup(name="Capsule Owner")


@pytest.fixture
def capsule(capi: httpx.Client, owner: Account) -> Iterator[dict[str, object]]:
    resp = capi.post("/v1/capsules", json={"memory_mb": 256}, headers=owner.headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, object] = resp.json()
    yield body
    capi.delete(f"/v1/capsules/{body['id']}", headers=owner.headers)
