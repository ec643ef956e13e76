"""A control plane with three fake-runtime agents as separate processes.

`one` and `two` are configured agents (regular hosts); `three` stands in for a team's BYOC
machine: it is registered through the host API and joined to the fleet the way the uplink
does it (`platform.fleet.add(AgentHandle(host_id, client))`). Host sizes are pinned in the
database so placement does not depend on this machine's size.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from fleet.helpers import ONE, TWO, size_hosts
from hangar.core.platform import Platform
from hangar.server.app import build_app
from support.live import (
    LiveServer,
    fresh_postgres_database,
    hangar_command,
    make_settings,
)
from support.wrenn import Account, Wrenn


@dataclass
class FakeAgent:
    """A `hangar agent --runtime fake` subprocess."""

    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.data_dir / "run" / "agent.sock"

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        log = (self.data_dir / "agent.log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
        self.proc = subprocess.Popen(
            hangar_command("agent", "--data-dir", str(self.data_dir), "--runtime", "fake"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data_dir / "agent.log").read_text()[-2000:])
            with contextlib.suppress(httpx.TransportError):
                if self.direct().get("/v1/info").status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("agent did not start")

    def direct(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(transport=transport, base_url="http://agent", timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: it stops answering (as a hung or partitioned host), its state intact."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Fleet:
    """The running control plane, its platform object and its agents."""

    live: LiveServer
    platform: Platform
    agents: dict[str, FakeAgent]


@contextlib.contextmanager
def _serve(backend: str, settings: object, platform: Platform) -> Iterator[str]:
    app = build_app(settings, platform)  # type: ignore[arg-type]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False))
    thread = threading.Thread(
        target=lambda: server.run(sockets=[sock]), name=f"fleet-{backend}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("control plane did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def fleet(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp(f"fleet-{backend}")
    agents = {name: FakeAgent(root / name) for name in ("one", "two", "three")}
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
        with _serve(backend, settings, platform) as base:
            live = LiveServer(backend, base, settings)
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
