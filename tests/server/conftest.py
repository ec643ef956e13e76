"""Fixtures for the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.live import fresh_postgres_database


@pytest.fixture
def fresh_db(backend: str) -> Iterator[str | None]:
    """None on SQLite (the data directory's file), else a new PostgreSQL database."""
    if backend == "sqlite":
        yield None
    else:
        with fresh_postgres_database() as url:
            yield url
