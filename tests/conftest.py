"""Shared fixtures.

Every test that uses `server` (or anything built on it) runs once per database backend:
SQLite in a temporary data directory, and PostgreSQL in a fresh `hangar_test_<hex>` database on
`HANGAR_TEST_POSTGRES_URL` (default `postgresql+psycopg://postgres@127.0.0.1:5432/test`), dropped
at the end. `HANGAR_TEST_BACKENDS=sqlite` (or `-m "not postgres"`) limits a run to SQLite.

Each backend gets one real Hangar (uvicorn on a free port, in a background thread) configured
with GitHub OAuth pointing at a local fake GitHub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.fake_github import FakeGitHub
from support.live import LiveServer, fresh_postgres_database, make_settings, run_in_thread
from support.wrenn import Account, Wrenn

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Honour HANGAR_TEST_BACKENDS (comma-separated) by deselecting the other backends."""
    wanted = os.environ.get("HANGAR_TEST_BACKENDS")
    if not wanted:
        return
    keep = {b.strip() for b in wanted.split(",") if b.strip()}
    selected, deselected = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec else None
        (deselected if backend is not None and backend not in keep else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(scope="session")
def fake_github() -> Iterator[FakeGitHub]:
    github = FakeGitHub().start()
    yield github
    github.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def database_url(backend: str) -> Iterator[str | None]:
    """None for SQLite (the default file in the data directory), else a fresh PostgreSQL DB."""
    if backend == "sqlite":
        yield None
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def server(
    backend: str,
    database_url: str | None,
    fake_github: FakeGitHub,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp(f"hangar-{backend}")
    settings = make_settings(data_dir, database_url, fake_github.url)
    with run_in_thread(backend, settings) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """A client for the Wrenn face (`/wrenn` on the main port)."""
    with server.client() as client:
        yield client


@pytest.fixture
def wrenn(http: httpx.Client) -> Wrenn:
    return Wrenn(http)


@pytest.fixture
def alice(wrenn: Wrenn) -> Account:
    """A fresh user, scoped to their personal team (which they own)."""
    return wrenn.signup(name="Alice")


@pytest.fixture
def bob(wrenn: Wrenn) -> Account:
    return wrenn.signup(name="Bob")
