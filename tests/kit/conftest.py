"""Fixtures of the face-kit tests.

`kit`: a real control plane (SQLite and PostgreSQL) with one real agent process on the fake
runtime: capsules cost nothing, and the agent's own log file can be read. `demo`: a live Hangar
serving the registered faces plus the throw-away demo face, on its main port and, through
`--face-port demo=PORT`'s code path, on a port of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from hangar.server.faces import FACES
from hangar.server.run import face_servers
from kit import demo_face
from support.live import LiveServer, free_port, make_settings, run_in_thread, serve_on_fake_agent
from support.processes import AgentProcess
from support.wrenn import Account, Wrenn

GREETING = "hi from the environment"


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
    with serve_on_fake_agent(backend, root) as (live, _, agent):
        yield Kit(live, agent)


@pytest.fixture
def team(kit: Kit) -> Iterator[Team]:
    """A fresh team; its capsules are destroyed afterwards."""
    who = kit.team()
    yield who
    with kit.client() as c:
        for capsule in c.get("/wrenn/v1/capsules", headers=who.headers).json():
            c.delete(f"/wrenn/v1/capsules/{capsule['id']}", headers=who.headers)


@dataclass
class DemoServer:
    """The main port's server and the demo face's own port."""

    live: LiveServer
    face_url: str

    @property
    def main_url(self) -> str:
        return f"{self.live.url}/demo"


@pytest.fixture(scope="session")
def demo(
    backend: str, database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoServer]:
    settings = make_settings(tmp_path_factory.mktemp(f"kit-{backend}"), database_url, None)
    port = free_port()
    settings.face_ports = {demo_face.NAME: port}
    with pytest.MonkeyPatch.context() as env:
        # The demo face's settings section, read with no line in the server's Settings.
        env.setenv("HANGAR_DEMO__GREETING", GREETING)
        # The one line that registers the face.
        faces = (*FACES, demo_face.FACE)
        with run_in_thread(backend, settings, faces=faces) as live:
            assert live.app is not None
            [own] = face_servers(live.app, settings)
            thread = threading.Thread(target=own.run, name="kit-demo-port", daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not own.started:
                assert thread.is_alive(), "the face port stopped"
                assert time.monotonic() < deadline, "the face port did not start"
                time.sleep(0.02)
            try:
                yield DemoServer(live, f"http://127.0.0.1:{port}")
            finally:
                own.should_exit = True
                thread.join(timeout=30)
