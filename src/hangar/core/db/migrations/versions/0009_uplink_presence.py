"""uplink presence: which control-plane replica holds each host's uplink

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:50:00.000000

An uplink ends on the one replica the agent dialled; the others relay their calls to it
through its internal URL, recorded here while the uplink is up.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hangar.core.db.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uplink_replica", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("uplink_since", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("uplink_since")
        batch_op.drop_column("uplink_replica")
