"""A real control plane (SQLite and PostgreSQL) with one real agent process on the fake
runtime: capsules cost nothing, and the agent's own log file can be read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn


@dataclass(frozen=True)
class Team:
    """A signed-up team and an API key of it (both faces accept the key)."""

    account: Account
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class Kit:
    """The control plane and its agent."""

    live: LiveServer
    agent: AgentProcess

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.live.url, timeout=120)

    def team(self) -> Team:
        with httpx.Client(base_url=self.live.wrenn_url, timeout=60) as wrenn:
            account = Wrenn(wrenn).signup(name="Kit")
            return Team(account, Wrenn(wrenn).create_key(account, "kit")["key"])


@pytest.fixture(scope="package")
def kit(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    root = tmp_path_factory.mktemp(f"kit-{backend}")
    agent = AgentProcess(root / "agent", runtime="fake")
    agent.data_dir.mkdir()
    agent.start()

    def run(url: str | None) -> Iterator[Kit]:
        settings = make_settings(root / "server", url, None)
        settings.agents = {"local": agent.address}
        settings.capsules.reconcile_seconds = 0.3
        with run_in_thread(backend, settings) as live:
            yield Kit(live, agent)

    try:
        if backend == "postgres":
            with fresh_postgres_database() as url:
                yield from run(url)
        else:
            yield from run(None)
    finally:
        agent.stop()


@pytest.fixture
def team(kit: Kit) -> Iterator[Team]:
    """A fresh team; its capsules are destroyed afterwards."""
    who = kit.team()
    yield who
    with kit.client() as c:
        for capsule in c.get("/wrenn/v1/capsules", headers=who.headers).json():
            c.delete(f"/wrenn/v1/capsules/{capsule['id']}", headers=who.headers)
