"""Real Hangar servers for tests: uvicorn in a background thread, on SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from hangar.core.config import GitHubOAuthSettings, RateLimitSettings, RequestLimitSettings
from hangar.core.platform import Platform
from hangar.faces.wrenn.settings import WrennSettings
from hangar.server.app import build_app
from hangar.server.faces import FACES
from hangar.server.settings import Settings
from hangar.web.logging import configure_logging
from hangar.web.registry import FaceSpec

if TYPE_CHECKING:
    from support.processes import AgentProcess

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FRONTEND_URL = "http://frontend.hangar.test"
REPO_ROOT = Path(__file__).resolve().parents[2]


def postgres_admin_url() -> str:
    """The SQLAlchemy URL of a PostgreSQL database tests may use to create their own."""
    return os.environ.get("HANGAR_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database `hangar_test_<hex>` (its SQLAlchemy URL), dropped afterwards."""
    admin = _reachable_admin_url(postgres_admin_url())
    name = f"hangar_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reachable_admin_url(url: str) -> str:
    """`url`, or the same server's `postgres` database when `url`'s database does not exist."""
    candidates = [url, make_url(url).set(database="postgres").render_as_string(False)]
    error: Exception | None = None
    for candidate in candidates:
        try:
            psycopg.connect(_libpq(candidate), autocommit=True, connect_timeout=5).close()
            return candidate
        except psycopg.OperationalError as exc:
            error = error or exc
    raise RuntimeError(
        f"PostgreSQL is not reachable at {url} (set HANGAR_TEST_POSTGRES_URL, or test only "
        f"SQLite with HANGAR_TEST_BACKENDS=sqlite or -m 'not postgres'): {error}"
    ) from error


def database_url_of(data_dir: Path, database_url: str | None) -> str:
    """The database a Hangar with `data_dir` uses: `database_url`, else its SQLite file."""
    return database_url or f"sqlite+aiosqlite:///{data_dir / 'hangar.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A running Hangar: the main port's URL, and what it was configured with."""

    backend: str
    url: str
    settings: Settings
    app: FastAPI | None = None

    @property
    def wrenn_url(self) -> str:
        return f"{self.url}/wrenn"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.wrenn_url, timeout=30.0, **kwargs)  # type: ignore[arg-type]


def make_settings(data_dir: Path, database_url: str | None, github_url: str | None) -> Settings:
    """Settings for a test server: explicit values only, so the caller's HANGAR_* env is moot."""
    oauth = (
        GitHubOAuthSettings(
            client_id="hangar-test-client",
            client_secret="hangar-test-secret",  # type: ignore[arg-type]
            authorize_url=f"{github_url}/login/oauth/authorize",
            token_url=f"{github_url}/login/oauth/access_token",
            api_url=github_url,
        )
        if github_url
        else None
    )
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        jwt_signing_keys=[],
        public_url=None,
        oauth_github=oauth,
        host="127.0.0.1",
        port=0,
        face_ports={},
        wrenn=WrennSettings(oauth_redirect_url=FRONTEND_URL),
        # One server serves a whole session's sign-ups and logins from 127.0.0.1; the
        # throttle's own tests (tests/security/test_limits.py) set tight limits.
        limits=RequestLimitSettings(
            auth_per_account="100000/minute", auth_per_address="100000/minute"
        ),
        # Likewise for request rates (tests/kit/test_rate_limits.py sets tight ones).
        rate_limits=RateLimitSettings(
            read="1000000/minute", write="1000000/minute", exec="1000000/minute"
        ),
        log_level="warning",
    )


@contextlib.contextmanager
def run_in_thread(
    backend: str,
    settings: Settings,
    platform: Platform | None = None,
    faces: Sequence[FaceSpec] = FACES,
) -> Iterator[LiveServer]:
    """Serve `build_app(settings, platform, faces)` with a real uvicorn on a free port until
    the block ends (`platform`: one the test keeps, to look into its fleet)."""
    # As `hangar serve` does; test settings log warnings and errors only.
    configure_logging(settings.log_level, settings.log_format)
    app = build_app(settings, platform, faces)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: server.run(sockets=[sock]), name=f"hangar-{backend}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"Hangar ({backend}) did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(backend, f"http://127.0.0.1:{port}", settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def hangar_command(*args: str) -> list[str]:
    """`hangar ARGS` through the project's interpreter (the installed console script)."""
    return [sys.executable, "-m", "hangar", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion."""
    return subprocess.run(
        hangar_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def wait_http(url: str, proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> None:
    """Poll until `url` answers (any status), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def serve_on_fake_agent(
    backend: str,
    root: Path,
    configure: Callable[[Settings], None] | None = None,
) -> Iterator[tuple[LiveServer, Platform, AgentProcess]]:
    """A live control plane on `backend` with one real agent process on the fake runtime.

    Capsules cost nothing there, so tests of the control plane's own rules (quotas, limits,
    metrics, correlation) run fast; the agent is the configured host `local`.
    """
    from support.processes import AgentProcess  # it imports this module

    agent = AgentProcess(root / "agent", runtime="fake")
    agent.data_dir.mkdir(parents=True)
    agent.start()

    def run(url: str | None) -> Iterator[tuple[LiveServer, Platform, AgentProcess]]:
        settings = make_settings(root / "server", url, None)
        settings.agents = {"local": agent.address}
        settings.capsules.reconcile_seconds = 0.3
        if configure is not None:
            configure(settings)
        platform = Platform(settings)
        with run_in_thread(backend, settings, platform) as live:
            yield live, platform, agent

    try:
        if backend == "postgres":
            with fresh_postgres_database() as url:
                yield from run(url)
        else:
            yield from run(None)
    finally:
        agent.stop()
