"""The ledger's time index becomes a BRIN index on Postgres (issue 14).

``ix_usage_created_at`` (a btree since 0001) served the operators' time ranges (the
usage report, ``stats``, retention). The ledger is appended in time order, so a btree
on ``created_at`` is perfectly correlated with the table, and Postgres then prefers a
backward walk of it, filtered by key, for the ``usage`` action's newest rows of a
key (``metering.recent_usage_query``) over ``ix_usage_api_key_created``: cheap while
the key is busy, a walk over every later row of the ledger for a key that has gone
quiet (a revoked key of a big customer: millions of rows). A BRIN index answers
ranges (a bitmap scan of the blocks that hold them, as fast for a month's report) but
gives no order, so the newest rows of a key can only come from the key's index. It is
also about a thousandth of the btree's size and cheaper to keep up on every insert.
``autosummarize`` has autovacuum summarise each block range as it fills; rows in
ranges not summarised yet are always read, never missed.

SQLite keeps its btree (no BRIN there; the embedded ledger is small).

On a large ledger the swap takes the table's write lock while the BRIN index is built
(about 2 s per 10M rows here): run it in a quiet minute, or build it first by hand with
``CREATE INDEX CONCURRENTLY ix_usage_created_brin ... USING brin``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_usage_created_at", table_name="usage")
    op.create_index(
        "ix_usage_created_at",
        "usage",
        ["created_at"],
        postgresql_using="brin",
        postgresql_with={"autosummarize": "on"},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_usage_created_at", table_name="usage")
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
