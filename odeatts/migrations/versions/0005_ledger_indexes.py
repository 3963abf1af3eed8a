"""The ledger at scale (issue 14): indexes for the operators' queries.

``ix_usage_reserved``  a partial index on the rows still ``reserved``: the hourly
                       ``abandon_stale`` finds dead workers' reservations in it without
                       reading the (user, status) index of every row. It holds only
                       the rows in flight (a few per live job), so the job path pays
                       one small index entry per reservation.
``ix_users_cycle_end`` ``reset-due`` finds the users whose cycle has ended, a batch at
                       a time, by this index. ``cycle_end`` changes once a month per
                       user, so the settle's update of ``used_ms`` stays a HOT update.

Both backends support partial indexes; the predicate is a literal, so a query must
spell ``status = 'reserved'`` as a literal too (not a bound parameter) for Postgres to
use it under a generic plan.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RESERVED_ONLY = sa.text("status = 'reserved'")


def upgrade() -> None:
    op.create_index(
        "ix_usage_reserved",
        "usage",
        ["reserved_at"],
        postgresql_where=RESERVED_ONLY,
        sqlite_where=RESERVED_ONLY,
    )
    op.create_index("ix_users_cycle_end", "users", ["cycle_end"])


def downgrade() -> None:
    op.drop_index("ix_users_cycle_end", table_name="users")
    op.drop_index("ix_usage_reserved", table_name="usage")
