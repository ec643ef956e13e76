"""fleet: draining hosts, team placement, static agents as host rows

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 08:45:00.000000

Before this revision a configured agent (`hangar serve`'s `local`, HANGAR_AGENTS entries) had no
host row and capsules/templates on it carried its configured name as host_id. Static agents are
now regular hosts whose id is uuid5(STATIC_HOST_NAMESPACE, name), so those rows are rewritten to
that id here; the control plane upserts the matching host row when it starts.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

import hangar.core.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copy of hangar.core.fleet.static.STATIC_HOST_NAMESPACE (a test keeps them equal).
STATIC_HOST_NAMESPACE = uuid.UUID("5f1d8a3e-7c1b-4f2a-9d0e-6b3c2a1f4e57")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _rewrite_static_host_ids() -> None:
    """Give rows that name a configured agent the id of its host row."""
    bind = op.get_bind()
    for table in ("capsules", "templates"):
        names = bind.execute(sa.text(f"SELECT DISTINCT host_id FROM {table}")).scalars().all()  # noqa: S608 - fixed names
        for name in names:
            if not name or _is_uuid(name):
                continue
            bind.execute(
                sa.text(f"UPDATE {table} SET host_id = :new WHERE host_id = :old"),  # noqa: S608
                {"new": str(uuid.uuid5(STATIC_HOST_NAMESPACE, name)), "old": name},
            )


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("draining", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "team_placement",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("byoc_only", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_team_placement_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_placement")),
    )
    _rewrite_static_host_ids()


def downgrade() -> None:
    # Rewritten host ids are kept: uuid5 is one-way, and the rows still work with host rows.
    op.drop_table("team_placement")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("draining")
