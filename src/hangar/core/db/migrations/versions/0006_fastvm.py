"""fastvm: capsule names, disks, firewalls; snapshot status; team quotas; console tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 08:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hangar.core.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("machine_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("disk_gb", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("firewall", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("ipv6", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("source_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("source_snapshot_id", sa.String(length=36), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_capsules_source_snapshot_id"), ["source_snapshot_id"], unique=False
        )

    with op.batch_alter_table("templates", schema=None) as batch_op:
        # Every snapshot made before this revision finished synchronously.
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="ready")
        )
        batch_op.add_column(sa.Column("status_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("source_capsule_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("firewall", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("disk_gb", sa.Integer(), nullable=True))

    op.create_table(
        "team_quotas",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("vcpu", sa.Integer(), nullable=True),
        sa.Column("memory_mib", sa.Integer(), nullable=True),
        sa.Column("disk_gib", sa.Integer(), nullable=True),
        sa.Column("snapshot_count", sa.Integer(), nullable=True),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_quotas_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_quotas")),
    )
    op.create_table(
        "console_tokens",
        sa.Column("capsule_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["capsule_id"],
            ["capsules.id"],
            name=op.f("fk_console_tokens_capsule_id_capsules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_tokens_token_hash")),
    )
    with op.batch_alter_table("console_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_tokens_capsule_id"), ["capsule_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("console_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_tokens_capsule_id"))
    op.drop_table("console_tokens")
    op.drop_table("team_quotas")
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_column("disk_gb")
        batch_op.drop_column("firewall")
        batch_op.drop_column("source_capsule_id")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("status")
    with op.batch_alter_table("capsules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capsules_source_snapshot_id"))
        batch_op.drop_column("source_snapshot_id")
        batch_op.drop_column("source_name")
        batch_op.drop_column("ipv6")
        batch_op.drop_column("firewall")
        batch_op.drop_column("disk_gb")
        batch_op.drop_column("machine_type")
        batch_op.drop_column("name")
