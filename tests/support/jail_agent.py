"""A real `hangar agent` process with the jail runtime, and Hangar servers that use it.

One agent per backend, as its own process, so tests can kill and restart it. The `minimal`
template is built once with debootstrap and cached in HANGAR_TEMPLATE_CACHE (default
~/.cache/hangar/templates), so later runs start in seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hangar.server.settings import Settings
from support.live import (
    LiveServer,
    fresh_postgres_database,
    hangar_command,
    make_settings,
    run_in_thread,
)


def jail_unavailable() -> str | None:
    """Why the jail runtime cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the jail runtime tests run as root (cgroups, mounts)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (scripts/test installs it)"
    return None


@dataclass
class AgentProcess:
    """A `hangar agent` subprocess and how to reach it."""

    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.data_dir / "run" / "agent.sock"

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                hangar_command("agent", "--data-dir", str(self.data_dir)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HANGAR_AGENT_RUNTIME": "jail"},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log.read_text()[-2000:]}")
            if self.socket.exists():
                transport = httpx.HTTPTransport(uds=str(self.socket))
                try:
                    with httpx.Client(transport=transport, base_url="http://agent") as c:
                        if c.get("/v1/info").status_code == 200:
                            return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("agent did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash would: sandboxes must survive it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def destroy_all(self) -> None:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://agent", timeout=60) as c:
            for sandbox in c.get("/v1/sandboxes").json():
                c.delete(f"/v1/sandboxes/{sandbox['sandbox_id']}")


@pytest.fixture(scope="session")
def agent(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One jail agent per backend (a conftest shares it with `agent = jail_agent.agent`)."""
    reason = jail_unavailable()
    if reason:
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp(f"agent-{backend}")
    process = AgentProcess(data_dir, data_dir / "agent.log")
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
