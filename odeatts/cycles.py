"""Billing cycles: one month from each user's own start day, archived when they end.

Two callers roll a cycle that has ended, both holding the user's row lock:
``billing.reset_due`` (the scheduled job, hundreds of users per statement with
``roll_ended_cycles``) and ``metering.reserve`` (the next speech job of a user whose
cycle ended before the scheduled job reached them, ``roll_ended_cycle``). Both compute
the new month here, in Python: this module is the one home of the month rule. So a late or
missed cron never charges a new month's jobs to last month's quota, and a cycle is
archived once whoever gets there first (``billing_cycles`` is unique on user and
cycle start, and the second comes after the first under the lock).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.allowance import allowance_of
from odeatts.db import insert_for, on_postgres
from odeatts.models import BillingCycle, Plan, User

__all__ = [
    "CycleArchive",
    "RolledBatch",
    "archive_cycle",
    "current_start",
    "next_month",
    "roll_ended_cycle",
    "roll_ended_cycles",
    "start_cycle",
]


def next_month(start: dt.datetime) -> dt.datetime:
    """The same day and time next month, clamped to the month's last day."""
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    for day in range(start.day, 27, -1):
        try:
            return start.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return start.replace(year=year, month=month, day=min(start.day, 28))


def current_start(cycle_end: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The start of the cycle that contains ``now``, stepping monthly from ``cycle_end``."""
    start = cycle_end
    while next_month(start) <= now:
        start = next_month(start)
    return start


@dataclass(frozen=True, slots=True)
class CycleArchive:
    """A closed cycle as archived in ``billing_cycles``, and the cycle that replaced it."""

    user_id: int
    email: str
    plan_id: str
    cycle_start: dt.datetime
    cycle_end: dt.datetime
    quota_ms: int
    used_ms: int
    credit_ms: int
    closed_at: dt.datetime
    new_start: dt.datetime
    new_end: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": {"id": self.user_id, "email": self.email, "plan": self.plan_id},
            "archived": {
                "start": self.cycle_start.isoformat(),
                "end": self.cycle_end.isoformat(),
                "quota_seconds": self.quota_ms / 1000,
                "used_seconds": self.used_ms / 1000,
                "credit_seconds": self.credit_ms / 1000,
            },
            "cycle": {"start": self.new_start.isoformat(), "end": self.new_end.isoformat()},
        }


def _archive(user: User, plan: Plan, *, end: dt.datetime, now: dt.datetime) -> CycleArchive:
    """The archive of ``user``'s cycle closed at ``end``, and the month that follows."""
    return CycleArchive(
        user_id=user.id,
        email=user.email,
        plan_id=plan.id,
        cycle_start=user.cycle_start,
        cycle_end=end,
        quota_ms=allowance_of(user, plan).quota_ms,
        used_ms=user.used_ms,
        credit_ms=user.credit_ms,
        closed_at=now,
        new_start=end,
        new_end=next_month(end),
    )


def _archive_row(archive: CycleArchive) -> dict[str, Any]:
    return {
        "user_id": archive.user_id,
        "plan_id": archive.plan_id,
        "cycle_start": archive.cycle_start,
        "cycle_end": archive.cycle_end,
        "quota_ms": archive.quota_ms,
        "used_ms": archive.used_ms,
        "credit_ms": archive.credit_ms,
        "closed_at": archive.closed_at,
    }


# One INSERT for the whole batch on Postgres, the archives as arrays: a statement of
# fixed shape (prepared once), however many users.
_ARCHIVE_PG = text(
    """
    INSERT INTO billing_cycles
           (user_id, plan_id, cycle_start, cycle_end, quota_ms, used_ms, credit_ms, closed_at)
    SELECT * FROM unnest(
           CAST(:user_id AS integer[]), CAST(:plan_id AS text[]),
           CAST(:cycle_start AS timestamptz[]), CAST(:cycle_end AS timestamptz[]),
           CAST(:quota_ms AS bigint[]), CAST(:used_ms AS bigint[]),
           CAST(:credit_ms AS bigint[]), CAST(:closed_at AS timestamptz[]))
    ON CONFLICT (user_id, cycle_start) DO NOTHING
    RETURNING user_id
    """
)


async def _insert_archives(session: AsyncSession, archives: list[CycleArchive]) -> set[int]:
    """Insert ``archives`` in one statement; the users whose archive was new. A cycle
    already archived (unique on user and cycle start) is left as it is."""
    rows = [_archive_row(a) for a in archives]
    if len(rows) > 1 and on_postgres(session):
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        return set((await session.execute(_ARCHIVE_PG, columns)).scalars())
    # One user (a job's roll, an operator's reset), or SQLite: SQLAlchemy's
    # "insertmanyvalues", many VALUES in one statement.
    table = BillingCycle.__table__
    stmt = (
        insert_for(session)(table)
        .on_conflict_do_nothing(index_elements=["user_id", "cycle_start"])
        .returning(table.c.user_id)
    )
    return set((await session.execute(stmt, rows)).scalars())


async def archive_cycle(
    session: AsyncSession, user: User, plan: Plan, *, end: dt.datetime, now: dt.datetime
) -> CycleArchive | None:
    """Insert the cycle's totals; None if (user, cycle_start) was archived already."""
    archive = _archive(user, plan, end=end, now=now)
    return archive if await _insert_archives(session, [archive]) else None


def start_cycle(user: User, archive: CycleArchive) -> None:
    user.used_ms = 0
    user.credit_ms = 0
    user.cycle_start = archive.new_start
    user.cycle_end = archive.new_end


async def roll_ended_cycle(
    session: AsyncSession, user: User, plan: Plan, *, now: dt.datetime
) -> CycleArchive | None:
    """Archive and restart a cycle that has ended. The caller holds the user's row lock.

    Missed months make one combined archive (``used_ms`` kept growing through them and
    cannot be split afterwards); None when the cycle has not ended or, after a hand
    edit, was archived already (then the counters are left alone).
    """
    if user.cycle_end > now:
        return None
    archive = await archive_cycle(
        session, user, plan, end=current_start(user.cycle_end, now), now=now
    )
    if archive is not None:
        start_cycle(user, archive)
    return archive


@dataclass(frozen=True, slots=True)
class RolledBatch:
    """One batch of ``roll_ended_cycles``: what it archived, the users it found already
    archived (a hand edit: left alone), and the last user id it looked at."""

    archives: list[CycleArchive]
    already_archived: list[int]
    last_id: int | None  # None: no user with an ended cycle after ``after``


async def roll_ended_cycles(
    session: AsyncSession, *, now: dt.datetime, after: int, limit: int
) -> RolledBatch:
    """``roll_ended_cycle`` for up to ``limit`` users at once, by user id after ``after``.

    Four statements whatever ``limit``: lock the users whose cycle has ended (in id
    order, ``FOR UPDATE``: the lock a speech job takes first, so the lock order stays
    users -> usage, and two runs queue instead of deadlocking; a user a job or another
    run rolled meanwhile no longer matches once the lock is granted), compute each
    archive here with the same month rule (``current_start``, ``next_month``), insert
    them in one INSERT (unique on user and cycle start: once, whoever comes first)
    and restart exactly the users whose archive was new in one UPDATE.
    """
    found = (
        await session.execute(
            select(User, Plan)
            .join(Plan, Plan.id == User.plan_id)
            .where(User.cycle_end <= now, User.id > after)
            .order_by(User.id)
            .limit(limit)
            .with_for_update(of=User)
        )
    ).all()
    if not found:
        return RolledBatch(archives=[], already_archived=[], last_id=None)
    archives = [
        _archive(user, plan, end=current_start(user.cycle_end, now), now=now)
        for user, plan in found
    ]
    new = await _insert_archives(session, archives)
    rolled = [a for a in archives if a.user_id in new]
    if rolled:
        await _restart(session, rolled)
    return RolledBatch(
        archives=rolled,
        already_archived=[a.user_id for a in archives if a.user_id not in new],
        last_id=found[-1][0].id,
    )


# One UPDATE for the whole batch on Postgres: each user's new cycle from arrays.
_RESTART_PG = text(
    """
    UPDATE users AS u
       SET used_ms = 0, credit_ms = 0, cycle_start = v.new_start, cycle_end = v.new_end
      FROM unnest(CAST(:ids AS integer[]), CAST(:starts AS timestamptz[]),
                  CAST(:ends AS timestamptz[])) AS v(id, new_start, new_end)
     WHERE u.id = v.id
    """
)


async def _restart(session: AsyncSession, archives: list[CycleArchive]) -> None:
    """Start each archived user's new cycle: used and credit to zero (``start_cycle``)."""
    if on_postgres(session):
        await session.execute(
            _RESTART_PG,
            {
                "ids": [a.user_id for a in archives],
                "starts": [a.new_start for a in archives],
                "ends": [a.new_end for a in archives],
            },
        )
        return
    # SQLite (in process, no arrays): an UPDATE by primary key per user, one executemany.
    await session.execute(
        update(User),
        [
            {
                "id": a.user_id,
                "used_ms": 0,
                "credit_ms": 0,
                "cycle_start": a.new_start,
                "cycle_end": a.new_end,
            }
            for a in archives
        ],
    )
