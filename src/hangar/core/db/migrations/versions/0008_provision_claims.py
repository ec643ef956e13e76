"""provision claims: start attempts and claim time of queued capsules

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:20:00.000000

A queued capsule is started by whichever control-plane replica claims it first (pending ->
starting in one conditional UPDATE); the failed starts so far and the time of the current
claim live in the row so the attempt limit and stale-claim recovery hold across replicas.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hangar.core.db.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("start_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("claimed_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("start_attempts")
