"""compute domain: grants, host GPUs and regions, terminals, GPU sharing, allocations, billing

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 13:00:28.402175

Console tokens become grants of purpose `console` (their rows are copied, then the old table
dropped; a downgrade copies the console grants back). Hosts get a region label (`local`) and
a GPU inventory. New kinds: terminal sessions and guests (Warpdrive), GPU agents, workers and
share links (GPU Go), allocations and a billing ledger (GPUaaS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hangar.core.db.base

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=36), nullable=True),
        sa.Column("principal_id", sa.String(length=36), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome_id", sa.String(length=64), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_grants_token_hash")),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index("ix_grants_purpose_subject", ["purpose", "subject_id"], unique=False)

    op.create_table(
        "allocations",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("gpu_model", sa.String(length=64), nullable=True),
        sa.Column("gpus_total", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("price_per_hour_minor", sa.BigInteger(), nullable=False),
        sa.Column("ssh_key_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("host_id", sa.String(length=36), nullable=True),
        sa.Column("capsule_id", sa.String(length=36), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("active_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "release_requested_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("released_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("billed_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "billing_stopped_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_allocations_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_allocations_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
    )
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.create_index("ix_allocations_status", ["status"], unique=False)
        batch_op.create_index("ix_allocations_team_status", ["team_id", "status"], unique=False)

    op.create_table(
        "billing_accounts",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="usd", nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_billing_accounts_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_billing_accounts")),
    )
    op.create_table(
        "gpu_agents",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("os", sa.String(length=20), nullable=False),
        sa.Column("arch", sa.String(length=20), nullable=False),
        sa.Column("network_ips", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_seen_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("config_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_gpu_agents_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_gpu_agents_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_agents")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_gpu_agents_secret_hash")),
    )
    with op.batch_alter_table("gpu_agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gpu_agents_team_id"), ["team_id"], unique=False)

    op.create_table(
        "terminal_sessions",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("no_join", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("capsule_id", sa.String(length=36), nullable=True),
        sa.Column("owner_pub_key", sa.Text(), nullable=False),
        sa.Column("owner_key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("started_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_terminal_sessions_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_terminal_sessions_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_sessions")),
        sa.UniqueConstraint("alias", name=op.f("uq_terminal_sessions_alias")),
    )
    with op.batch_alter_table("terminal_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_terminal_sessions_capsule_id"), ["capsule_id"], unique=False
        )
        batch_op.create_index(
            "ix_terminal_sessions_owner_status", ["owner_id", "status"], unique=False
        )

    op.create_table(
        "billing_ledger",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("allocation_id", sa.String(length=36), nullable=True),
        sa.Column("balance_after", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["billing_accounts.team_id"],
            name=op.f("fk_billing_ledger_team_id_billing_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_ledger")),
        sa.UniqueConstraint("external_id", name=op.f("uq_billing_ledger_external_id")),
    )
    with op.batch_alter_table("billing_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_ledger_allocation_id"), ["allocation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_billing_ledger_team_id"), ["team_id"], unique=False)

    op.create_table(
        "gpu_agent_gpus",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("gpu_id", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("vram_mb", sa.Integer(), nullable=False),
        sa.Column("driver_version", sa.String(length=64), nullable=True),
        sa.Column("cuda_version", sa.String(length=64), nullable=True),
        sa.Column("used_by_worker", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["gpu_agents.id"],
            name=op.f("fk_gpu_agent_gpus_agent_id_gpu_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "gpu_id", name=op.f("pk_gpu_agent_gpus")),
    )
    op.create_table(
        "gpu_workers",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("gpu_ids", sa.JSON(), nullable=False),
        sa.Column("listen_port", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("restarts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("vram_mb", sa.Integer(), nullable=True),
        sa.Column("compute_percent", sa.Integer(), nullable=True),
        sa.Column("isolation_mode", sa.String(length=8), nullable=True),
        sa.Column("connections", sa.JSON(), nullable=False),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["gpu_agents.id"],
            name=op.f("fk_gpu_workers_agent_id_gpu_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_workers")),
    )
    with op.batch_alter_table("gpu_workers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gpu_workers_agent_id"), ["agent_id"], unique=False)

    op.create_table(
        "host_gpus",
        sa.Column("host_id", sa.String(length=36), nullable=False),
        sa.Column("uuid", sa.String(length=96), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("holder_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_host_gpus_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("host_id", "uuid", name=op.f("pk_host_gpus")),
    )
    with op.batch_alter_table("host_gpus", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_gpus_holder_id"), ["holder_id"], unique=False)
        batch_op.create_index("ix_host_gpus_host_model", ["host_id", "model"], unique=False)

    op.create_table(
        "terminal_guests",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("joiner_uuid", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("vm_user", sa.String(length=32), nullable=False),
        sa.Column("pub_key", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("read_only", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("decided_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("joined_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["terminal_sessions.id"],
            name=op.f("fk_terminal_guests_session_id_terminal_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_terminal_guests_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_guests")),
        sa.UniqueConstraint("joiner_uuid", name=op.f("uq_terminal_guests_joiner_uuid")),
    )
    with op.batch_alter_table("terminal_guests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_terminal_guests_session_state", ["session_id", "state"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_terminal_guests_user_id"), ["user_id"], unique=False)

    op.create_table(
        "gpu_share_links",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("worker_id", sa.String(length=36), nullable=False),
        sa.Column("short_code", sa.String(length=16), nullable=False),
        sa.Column("connection_ip", sa.String(length=255), nullable=False),
        sa.Column("hardware_vendor", sa.String(length=16), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("used_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("expires_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hangar.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_gpu_share_links_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["gpu_workers.id"],
            name=op.f("fk_gpu_share_links_worker_id_gpu_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_share_links")),
        sa.UniqueConstraint("short_code", name=op.f("uq_gpu_share_links_short_code")),
    )
    with op.batch_alter_table("gpu_share_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gpu_share_links_team_id"), ["team_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_gpu_share_links_worker_id"), ["worker_id"], unique=False
        )

    # Live console tokens keep working across the upgrade: same hash, same expiry.
    op.execute(
        "INSERT INTO grants (id, purpose, subject_id, token_hash, expires_at, used_at, "
        "created_at) SELECT id, 'console', capsule_id, token_hash, expires_at, used_at, "
        "created_at FROM console_tokens"
    )
    with op.batch_alter_table("console_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_tokens_capsule_id"))

    op.drop_table("console_tokens")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("region", sa.String(length=64), server_default="local", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("region")

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
    # Console grants whose capsule still exists go back; other purposes had no table before.
    op.execute(
        "INSERT INTO console_tokens (id, capsule_id, token_hash, expires_at, used_at, "
        "created_at) SELECT g.id, g.subject_id, g.token_hash, g.expires_at, g.used_at, "
        "g.created_at FROM grants g JOIN capsules c ON c.id = g.subject_id "
        "WHERE g.purpose = 'console'"
    )

    # Dropping a table drops its indexes with it.
    op.drop_table("gpu_share_links")
    op.drop_table("terminal_guests")
    op.drop_table("host_gpus")
    op.drop_table("gpu_workers")
    op.drop_table("gpu_agent_gpus")
    op.drop_table("billing_ledger")
    op.drop_table("terminal_sessions")
    op.drop_table("gpu_agents")
    op.drop_table("billing_accounts")
    op.drop_table("allocations")
    op.drop_table("grants")
