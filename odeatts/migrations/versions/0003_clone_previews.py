"""What a clone's preview cost: the characters MiniMax billed and the model that read it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("voices") as batch:
        batch.add_column(sa.Column("preview_characters", sa.Integer, nullable=True))
        batch.add_column(sa.Column("preview_model", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("voices") as batch:
        batch.drop_column("preview_model")
        batch.drop_column("preview_characters")
