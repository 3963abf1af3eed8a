"""Operations: key expiry (rotation grace), quota credits and their audit, archived cycles,
and the source of cloned voices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from odeatts.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", UtcDateTime, nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("credit_ms", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("voices") as batch:
        batch.add_column(sa.Column("minimax_file_id", sa.BigInteger, nullable=True))
    op.create_table(
        "quota_adjustments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("delta_ms", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "billing_cycles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("plan_id", sa.String(32), nullable=False),
        sa.Column("cycle_start", UtcDateTime, nullable=False),
        sa.Column("cycle_end", UtcDateTime, nullable=False),
        sa.Column("quota_ms", sa.BigInteger, nullable=False),
        sa.Column("used_ms", sa.BigInteger, nullable=False),
        sa.Column("credit_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("user_id", "cycle_start", name="uq_billing_cycles_user_start"),
    )
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
    # keys list: a key's last use is its newest usage row.
    op.create_index("ix_usage_api_key_created", "usage", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_api_key_created", table_name="usage")
    op.drop_index("ix_usage_created_at", table_name="usage")
    op.drop_table("billing_cycles")
    op.drop_table("quota_adjustments")
    with op.batch_alter_table("voices") as batch:
        batch.drop_column("minimax_file_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("credit_ms")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
