"""A real `hangar agent` process with the jail runtime, and Hangar servers that use it.

One agent per backend, as its own process, so tests can kill and restart it. The `minimal`
template is built once with debootstrap and cached in HANGAR_TEMPLATE_CACHE (default
~/.cache/hangar/templates), so later runs start in seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hangar.server.settings import Settings
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.processes import AgentProcess


def jail_unavailable() -> str | None:
    """Why the jail runtime (and agents with it) cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the jail runtime tests run as root (cgroups, mounts)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (scripts/test installs it)"
    return None


@pytest.fixture(scope="session")
def agent(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One jail agent per backend (a conftest shares it with `agent = jail_agent.agent`)."""
    reason = jail_unavailable()
    if reason:
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp(f"agent-{backend}")
    process = AgentProcess(data_dir, runtime="jail")
    process.start()
    try:
        yield process
    finally:
        try:
            process.destroy_all()
        finally:
            process.kill()


@contextlib.contextmanager
def serve_on_agent(
    backend: str,
    data_dir: Path,
    agent: AgentProcess,
    configure: Callable[[Settings], None] | None = None,
) -> Iterator[LiveServer]:
    """A live Hangar on `backend` (a fresh PostgreSQL database, or SQLite in `data_dir`) whose
    capsules run on `agent`, reconciled and sampled quickly; `configure` adjusts the rest."""

    def serve(url: str | None) -> Iterator[LiveServer]:
        settings = make_settings(data_dir, url, None)
        settings.agents = {"local": agent.address}
        settings.capsules.reconcile_seconds = 0.5
        settings.capsules.usage_sample_seconds = 1.0
        if configure is not None:
            configure(settings)
        with run_in_thread(backend, settings) as live:
            yield live

    if backend == "postgres":
        with fresh_postgres_database() as url:
            yield from serve(url)
    else:
        yield from serve(None)
