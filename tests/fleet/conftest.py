"""A control plane with three fake-runtime agents as separate processes.

`one` and `two` are configured agents (regular hosts); `three` stands in for a team's BYOC
machine: it is registered through the host API and joined to the fleet the way the uplink
does it (`platform.fleet.add(AgentHandle(host_id, client))`). Host sizes are pinned in the
database so placement does not depend on this machine's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from fleet.helpers import ONE, TWO, size_hosts
from hangar.core.platform import Platform
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn


@dataclass
class Fleet:
    """The running control plane, its platform object and its agents."""

    live: LiveServer
    platform: Platform
    agents: dict[str, AgentProcess]


@pytest.fixture(scope="session")
def fleet(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp(f"fleet-{backend}")
    agents = {name: AgentProcess(root / name, runtime="fake") for name in ("one", "two", "three")}
    for agent in agents.values():
        agent.data_dir.mkdir()
        agent.start()

    def run(url: str | None) -> Iterator[Fleet]:
        settings = make_settings(root / "server", url, None)
        settings.agents = {n: agents[n].address for n in ("one", "two")}
        settings.capsules.reconcile_seconds = 0.3
        settings.hosts.reconcile_seconds = 0.3
        settings.hosts.poll_timeout_seconds = 1.0
        # Every host is sized 2 vCPUs / 2048 MB by the tests; take it as it is.
        settings.hosts.cpu_overcommit = 1.0
        settings.hosts.memory_overcommit = 1.0
        settings.hosts.reserve_vcpus = 0
        settings.hosts.reserve_memory_mb = 0
        platform = Platform(settings)
        with run_in_thread(backend, settings, platform) as live:
            size_hosts(live, ONE, TWO)
            yield Fleet(live, platform, agents)

    try:
        if backend == "postgres":
            with fresh_postgres_database() as url:
                yield from run(url)
        else:
            yield from run(None)
    finally:
        for agent in agents.values():
            agent.stop()


@pytest.fixture
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.live.wrenn_url, timeout=120.0) as client:
        yield client


@pytest.fixture
def team(api: httpx.Client) -> Account:
    return Wrenn(api).signup(name="Fleet User")
