"""reservations: the ledger's lock rows, and destroys noted before the host is asked

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00.000000

Creates record their reservation (the capsule row) and commit it before any agent call;
check-then-insert is serialised per team and per host by a write to that owner's row in
`reservation_locks`. `capsules.destroying_since` lets the reconciler finish a destroy that
a crash interrupted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hangar.core.db.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservation_locks",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("holds", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("scope", "owner_id", name=op.f("pk_reservation_locks")),
    )
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "destroying_since", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.drop_column("destroying_since")
    op.drop_table("reservation_locks")
