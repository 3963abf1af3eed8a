"""Operators see the service; callers get their default voice (issue 13).

``users.default_voice``   the voice a speech job without ``voice`` uses (a catalogue
                          name, checked when an operator sets it; a voice deactivated
                          since makes such jobs ``voice_not_found``).
``usage.worker_ms``       the job's time in the worker, from its start to its settle or
                          release: ``stats`` reports its percentiles.
``usage.upstream_ms``     MiniMax's time for the job (all its parts): the same.
``usage.upstream_alert``  ``account`` or ``voice`` when MiniMax failed the job in a way
                          an operator must act on (minimax.UPSTREAM_FAILURES). The
                          caller's code for an account failure is ``service_unavailable``,
                          which Postgres or Redis being away also gives: ``stats --check``
                          needs to tell them apart.

``odeatts_reserve2`` is ``odeatts_reserve`` (0004) that also accepts no voice
(``p_voice`` NULL): it then uses the user's default voice, records it on the usage row
and returns it in ``voice``; with no default either it answers ``no_voice`` and writes
nothing. ``odeatts_settle2`` also records ``worker_ms`` and ``upstream_ms``. Both are
new names, not replacements: their result or arguments changed, and workers keep the
old calls prepared (0004 says why). Workers of this version call only the new ones;
the old ones stay until no worker of the previous version runs (a later migration may
drop them). The ledger's ``ix_usage_created_at`` (0001) already serves the stats
window; nothing to add for it here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# 0004's function bodies, with the changes this revision makes spelled as replacements,
# so the rules both versions share (authentication, quota arithmetic, take-over) are
# written once and a change to them here cannot drift from 0004 unnoticed.


def _load_0004() -> ModuleType:
    path = Path(__file__).with_name("0004_job_path_functions.py")
    spec = importlib.util.spec_from_file_location("odeatts_migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_v4 = _load_0004()

_RESERVE_EDITS = (
    ("CREATE FUNCTION odeatts_reserve(", "CREATE FUNCTION odeatts_reserve2("),
    (
        "credit_ms bigint, used_ms bigint, reserved_ms bigint\n)",
        "credit_ms bigint, used_ms bigint, reserved_ms bigint, voice text\n)",
    ),
    (
        "u.streams_override AS streams_o,",
        "u.streams_override AS streams_o, u.default_voice AS default_voice,",
    ),
    (
        "    credit_ms := c.credit; used_ms := c.used;\n",
        "    credit_ms := c.credit; used_ms := c.used;\n"
        "    voice := coalesce(p_voice, c.default_voice);\n"
        "    IF voice IS NULL THEN\n"
        "        -- No voice asked for and no default set: nothing is written.\n"
        "        outcome := 'no_voice';\n"
        "        RETURN NEXT;\n"
        "        RETURN;\n"
        "    END IF;\n",
    ),
    (
        "VALUES (p_job_id, c.uid, c.key_id, p_voice,",
        "VALUES (p_job_id, c.uid, c.key_id, coalesce(p_voice, c.default_voice),",
    ),
    (
        "api_key_id = c.key_id, voice = p_voice,",
        "api_key_id = c.key_id, voice = coalesce(p_voice, c.default_voice),",
    ),
    (
        "billed_characters = NULL, trace_id = NULL, settled_at = NULL,",
        "billed_characters = NULL, trace_id = NULL, settled_at = NULL,\n"
        "           worker_ms = NULL, upstream_ms = NULL, upstream_alert = NULL,",
    ),
)

_SETTLE_EDITS = (
    ("CREATE FUNCTION odeatts_settle(", "CREATE FUNCTION odeatts_settle2("),
    (
        "p_error_code text, p_abandoned_too boolean\n)",
        "p_error_code text, p_abandoned_too boolean,\n"
        "    p_worker_ms integer, p_upstream_ms integer\n)",
    ),
    (
        "           error_code = p_error_code\n",
        "           error_code = p_error_code, worker_ms = p_worker_ms,\n"
        "           upstream_ms = p_upstream_ms\n",
    ),
)


def _edited(source: str, edits: tuple[tuple[str, str], ...]) -> str:
    for old, new in edits:
        if source.count(old) != 1:
            raise RuntimeError(f"0006: {old!r} is not once in 0004's function")
        source = source.replace(old, new)
    return source


# The output column ``voice`` shares the usage column's name: the statements spell the
# value out rather than name the variable.
RESERVE = _edited(_v4.RESERVE, _RESERVE_EDITS)
SETTLE = _edited(_v4.SETTLE, _SETTLE_EDITS)

SIGNATURES = (
    "odeatts_reserve2(text, text, text, text, integer, bigint, timestamptz, timestamptz)",
    "odeatts_settle2(integer, integer, integer, bigint, timestamptz, integer, text, text,"
    " boolean, integer, integer)",
)


def upgrade() -> None:
    op.add_column("users", sa.Column("default_voice", sa.String(64), nullable=True))
    op.add_column("usage", sa.Column("worker_ms", sa.Integer(), nullable=True))
    op.add_column("usage", sa.Column("upstream_ms", sa.Integer(), nullable=True))
    op.add_column("usage", sa.Column("upstream_alert", sa.String(16), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE)
        op.execute(SETTLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for signature in SIGNATURES:
            op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("upstream_alert")
        batch.drop_column("upstream_ms")
        batch.drop_column("worker_ms")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("default_voice")
