"""Billing cycles: one month from each user's own start day, archived when they end.

Two callers roll a cycle that has ended, both holding the user's row lock:
``billing.reset_due`` (the scheduled job) and ``metering.reserve`` (the next speech job
of a user whose cycle ended before the scheduled job reached them). So a late or
missed cron never charges a new month's jobs to last month's quota, and a cycle is
archived once whoever gets there first (``billing_cycles`` is unique on user and
cycle start, and the second comes after the first under the lock).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.allowance import allowance_of
from odeatts.db import insert_for
from odeatts.models import BillingCycle, Plan, User

__all__ = [
    "CycleArchive",
    "archive_cycle",
    "current_start",
    "next_month",
    "roll_ended_cycle",
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


async def archive_cycle(
    session: AsyncSession, user: User, plan: Plan, *, end: dt.datetime, now: dt.datetime
) -> CycleArchive | None:
    """Insert the cycle's totals; None if (user, cycle_start) was archived already."""
    archive = CycleArchive(
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
    insert = insert_for(session)
    stmt = (
        insert(BillingCycle)
        .values(
            user_id=user.id,
            plan_id=plan.id,
            cycle_start=archive.cycle_start,
            cycle_end=archive.cycle_end,
            quota_ms=archive.quota_ms,
            used_ms=archive.used_ms,
            credit_ms=archive.credit_ms,
            closed_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "cycle_start"])
        .returning(BillingCycle.id)
    )
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    return archive if inserted is not None else None


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
