"""Saved pronunciation dictionaries, per user or per voice (issue 12).

The job path reads them without a round trip of its own: a user's entries come back
with the reservation (one sub-select beside ``odeatts_reserve``, metering.py), a voice's
are cached with the voice catalogue (voice_cache.py). ``uq_pronunciations_user_word``
leads with ``user_id``, so it is also the index that sub-select reads.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from odeatts.models import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pronunciations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("voice_id", sa.Integer, sa.ForeignKey("voices.id"), nullable=True),
        sa.Column("word", sa.String(64), nullable=False),
        sa.Column("pronunciation", sa.String(128), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (voice_id IS NULL)", name="ck_pronunciations_one_owner"
        ),
        sa.UniqueConstraint("user_id", "word", name="uq_pronunciations_user_word"),
        sa.UniqueConstraint("voice_id", "word", name="uq_pronunciations_voice_word"),
    )


def downgrade() -> None:
    op.drop_table("pronunciations")
