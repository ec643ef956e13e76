"""An INSERT that can say ON CONFLICT, in the dialect of the session's database."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """`INSERT INTO table` with `on_conflict_do_nothing/update`: SQLite and PostgreSQL both
    have them, but each dialect builds its own statement."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
