"""A live Hangar whose FastVM face runs VMs on a real jail agent, and an organization in it.

The agent fixture is the capsule tests' (support/jail_agent.py: `hangar agent`, jail runtime).
An organization is a core team: it is made through the Wrenn face (signup, then an API key),
since the FastVM spec has no signup; every FastVM call then uses that key or the user's JWT.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hangar.server.settings import Settings
from support import jail_agent
from support.jail_agent import serve_on_agent
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn

agent = jail_agent.agent  # the jail agent fixture the capsule tests use, one per backend


@pytest.fixture(scope="session")
def fastvm_server(
    backend: str,
    agent: AgentProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp(f"hangar-fastvm-{backend}")
    with serve_on_agent(backend, data_dir, agent, known_capacity) as live:
        yield live


# Room for this many c8m16 VMs at most (fewer on a smaller machine), whatever the machine:
# tests that fill the host know when it is full.
CAPACITY_C8M16 = 4


def known_capacity(settings: Settings) -> None:
    """Hold back all but CAPACITY_C8M16 c8m16 VMs' worth of the agent's host (this machine)."""
    hosts = settings.hosts
    cpus = (os.cpu_count() or 1) * hosts.cpu_overcommit
    memory_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024**2
    memory = memory_mb * hosts.memory_overcommit
    hosts.reserve_vcpus = max(0.0, cpus - 8 * CAPACITY_C8M16)
    hosts.reserve_memory_mb = max(hosts.reserve_memory_mb, int(memory) - 16384 * CAPACITY_C8M16)


@pytest.fixture
def bare_server(backend: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live Hangar of its own (its host rows are the test's), with no agent configured."""

    def serve(url: str | None) -> Iterator[LiveServer]:
        with run_in_thread(backend, make_settings(tmp_path, url, None)) as live:
            yield live

    if backend == "postgres":
        with fresh_postgres_database() as url:
            yield from serve(url)
    else:
        yield from serve(None)


@dataclass(frozen=True)
class Org:
    """A team with an API key, as a FastVM organization."""

    account: Account
    key: str
    id: str  # the team's core id, FastVM's `orgId` (Wrenn shows it encoded)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


def new_org(server: LiveServer, name: str = "FastVM Org") -> Org:
    """Sign up through the Wrenn face and mint an API key for the new team."""
    with httpx.Client(base_url=server.wrenn_url, timeout=60) as wrenn:
        account = Wrenn(wrenn).signup(name=name)
        key = Wrenn(wrenn).create_key(account, "fastvm")["key"]
    with httpx.Client(base_url=f"{server.url}/fastvm", timeout=60) as fvm:
        quotas = fvm.get("/v1/org/quotas", headers={"X-API-Key": key})
        assert quotas.status_code == 200, quotas.text
    return Org(account, key, quotas.json()["orgId"])


@pytest.fixture
def fvm(fastvm_server: LiveServer) -> Iterator[httpx.Client]:
    """A client for the FastVM face (`/fastvm` on the main port)."""
    with httpx.Client(base_url=f"{fastvm_server.url}/fastvm", timeout=300.0) as client:
        yield client


@pytest.fixture
def org(fastvm_server: LiveServer, fvm: httpx.Client) -> Iterator[Org]:
    """A fresh organization; its VMs and snapshots are deleted afterwards."""
    o = new_org(fastvm_server)
    yield o
    cleanup(fvm, o)


def cleanup(fvm: httpx.Client, o: Org) -> None:
    """Delete every VM and snapshot an organization still has."""
    for vm in fvm.get("/v1/vms", headers=o.headers).json():
        fvm.delete(f"/v1/vms/{vm['id']}", headers=o.headers)
    for snap in fvm.get("/v1/snapshots", headers=o.headers).json():
        fvm.delete(f"/v1/snapshots/{snap['id']}", headers=o.headers)
