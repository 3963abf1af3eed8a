"""Voice aliases (issue 12): other names callers may use for a voice, e.g. OpenAI's
``alloy`` for ``british-female``, so code written for OpenAI's speech API ports by
changing the transport only. An alias is a name like a voice's, in the same space
(the catalogue refuses an alias that is a voice's name and the reverse); it follows
its voice (inactive voice, unusable alias).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from odeatts.models import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voice_aliases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("voice_id", sa.Integer, sa.ForeignKey("voices.id"), nullable=False, index=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voice_aliases")
