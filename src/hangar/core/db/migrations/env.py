"""Alembic environment: migrations run on a connection handed in by `hangar.core.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hangar.core.db.base import Base
from hangar.core.models import import_all_models

import_all_models()
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `hangar db upgrade`")
_run(connection)
