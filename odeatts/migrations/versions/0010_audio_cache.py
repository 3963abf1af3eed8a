"""The audio cache (issue 15): hits recorded in the ledger, users whose prompts are shared.

``usage.cached``            the job was served from the audio cache: MiniMax made
                            nothing for it, ``billed_characters`` stays NULL.
``usage.saved_characters``  what MiniMax billed for the original call of a hit: the
                            MiniMax cost the hit saved (``cache stats``).
``users.cache_global``      this user's cached audio is shared with every user (an
                            operator's ``cache share``); read with the reservation.

``odeatts_settle3`` is ``odeatts_settle2`` (0006) that also records ``cached`` and
``saved_characters``: a new name, not a replacement, because its arguments changed and
workers keep the old call prepared (0004 says why). Its body is 0006's, derived from
0004's SQL by exact replacements, so the rules the versions share are written once.
``p_duration_ms`` stays what is charged (for a hit: ``ODEATTS_CACHE_CHARGE`` of its
seconds), so ``users.used_ms`` remains the sum of its rows' ``duration_ms``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _load(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"odeatts_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_v6 = _load("0006_operators_stats.py")

_SETTLE_EDITS = (
    ("CREATE FUNCTION odeatts_settle2(", "CREATE FUNCTION odeatts_settle3("),
    (
        "    p_worker_ms integer, p_upstream_ms integer\n)",
        "    p_worker_ms integer, p_upstream_ms integer,\n"
        "    p_cached boolean, p_saved_characters integer\n)",
    ),
    (
        "           upstream_ms = p_upstream_ms\n",
        "           upstream_ms = p_upstream_ms, cached = p_cached,\n"
        "           saved_characters = p_saved_characters\n",
    ),
)

SETTLE = _v6._edited(_v6.SETTLE, _SETTLE_EDITS)

SIGNATURE = (
    "odeatts_settle3(integer, integer, integer, bigint, timestamptz, integer, text, text,"
    " boolean, integer, integer, boolean, integer)"
)


def upgrade() -> None:
    false = sa.false()
    op.add_column("usage", sa.Column("cached", sa.Boolean(), nullable=False, server_default=false))
    op.add_column("usage", sa.Column("saved_characters", sa.Integer(), nullable=True))
    op.add_column(
        "users", sa.Column("cache_global", sa.Boolean(), nullable=False, server_default=false)
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SETTLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("cache_global")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("saved_characters")
        batch.drop_column("cached")
