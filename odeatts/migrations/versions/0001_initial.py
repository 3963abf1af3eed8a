"""Initial schema: plans, users, api_keys, voices, usage; the four plans and six voices.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from odeatts.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)

# Plans are data: prices and limits change by migration or admin command, never by code.
# Enterprise's limits are defaults for a new deal; each customer gets per-user overrides.
PLANS = [
    {
        "id": "free",
        "name": "Free",
        "monthly_seconds": 600,
        "rpm": 10,
        "max_streams": 1,
        "price_cents": 0,
    },
    {
        "id": "basic",
        "name": "Basic",
        "monthly_seconds": 3600,
        "rpm": 30,
        "max_streams": 2,
        "price_cents": 1900,
    },
    {
        "id": "pro",
        "name": "Pro",
        "monthly_seconds": 14400,
        "rpm": 60,
        "max_streams": 5,
        "price_cents": 7000,
    },
    {
        "id": "enterprise",
        "name": "Enterprise",
        "monthly_seconds": 14400,
        "rpm": 60,
        "max_streams": 5,
        "price_cents": None,
    },
]

# MiniMax has no system voice labelled Nigerian; the two nigerian-* voices are
# stand-ins (clear English system voices with language_boost=English) until an
# operator registers real Nigerian clones (`admin.py voices clone`), which is the
# real answer. The British and American ones follow MiniMax's own descriptions.
VOICES = [
    (
        "nigerian-male",
        "English_Insightful_Speaker",
        "en-NG",
        "male",
        "Stand-in for a Nigerian male voice until a cloned voice is registered.",
    ),
    (
        "nigerian-female",
        "English_Graceful_Lady",
        "en-NG",
        "female",
        "Stand-in for a Nigerian female voice until a cloned voice is registered.",
    ),
    (
        "british-male",
        "English_expressive_narrator",
        "en-GB",
        "male",
        "Expressive adult male, British accent; audiobooks and narration.",
    ),
    (
        "british-female",
        "English_compelling_lady1",
        "en-GB",
        "female",
        "Compelling adult female, British accent; broadcast and announcements.",
    ),
    (
        "american-male",
        "English_magnetic_voiced_man",
        "en-US",
        "male",
        "Magnetic adult male, general American accent; adverts and promotions.",
    ),
    (
        "american-female",
        "English_captivating_female1",
        "en-US",
        "female",
        "Captivating adult female, general American accent; news and documentary.",
    ),
]


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("monthly_seconds", sa.Integer, nullable=False),
        sa.Column("rpm", sa.Integer, nullable=False),
        sa.Column("max_streams", sa.Integer, nullable=False),
        sa.Column("price_cents", sa.Integer, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("plan_id", sa.String(32), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("monthly_seconds_override", sa.Integer, nullable=True),
        sa.Column("rpm_override", sa.Integer, nullable=True),
        sa.Column("streams_override", sa.Integer, nullable=True),
        sa.Column("used_ms", sa.BigInteger, nullable=False),
        sa.Column("cycle_start", UtcDateTime, nullable=False),
        sa.Column("cycle_end", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("prefix", sa.String(16), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
    )
    voices = op.create_table(
        "voices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("minimax_voice_id", sa.String(256), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("gender", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("language_boost", sa.String(32), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(128), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("voice", sa.String(64), nullable=False),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("text_chars", sa.Integer, nullable=False),
        sa.Column("estimated_ms", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
        sa.Column("billed_characters", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("reserved_at", UtcDateTime, nullable=False),
        sa.Column("settled_at", UtcDateTime, nullable=True),
    )
    op.create_index("ix_usage_user_status", "usage", ["user_id", "status"])
    op.bulk_insert(plans, [{**p, "created_at": NOW} for p in PLANS])
    op.bulk_insert(
        voices,
        [
            {
                "name": n,
                "minimax_voice_id": v,
                "language": lang,
                "gender": g,
                "kind": "system",
                "language_boost": "English",
                "description": d,
                "active": True,
                "created_at": NOW,
            }
            for n, v, lang, g, d in VOICES
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_usage_user_status", table_name="usage")
    for table in ("usage", "voices", "api_keys", "users", "plans"):
        op.drop_table(table)
