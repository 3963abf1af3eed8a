"""A user's allowance: the limits their plan gives them now, and how much quota is left.

The one place the plan rules live, below both entrances (the job path and the
operators' CLI), so a change of rule is made once and seen by both:

limits      the plan's ``monthly_seconds``, ``rpm`` and ``concurrent_streams`` (column
            ``max_streams``), each replaced by the user's ``*_override`` when set.
quota       this cycle's seconds: the monthly limit plus the operators' credit
            (``credit_ms``, negative when seconds were taken back).
remaining   the quota less what was charged (``used_ms``) and the live reservations,
            never below zero; a job fits when its estimate is within it.
live        a ``reserved`` usage row younger than the lease TTL. An older one belongs
            to a dead worker: it stopped counting when its lease lapsed.

All of it is pure arithmetic on rows already loaded, except ``live_reserved_ms`` and
``read_quota_state``, which read through the session they are given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.models import RESERVED, Plan, Usage, User

__all__ = [
    "LIMIT_NAMES",
    "OVERRIDE_COLUMNS",
    "Allowance",
    "Limit",
    "QuotaState",
    "QuotaView",
    "allowance_of",
    "live_after",
    "live_reserved_ms",
    "quota_ms_of",
    "read_quota_state",
]

# The limits in the order operators see them.
LIMIT_NAMES = ("monthly_seconds", "rpm", "concurrent_streams")
# Limit name -> the ``users`` column that overrides it for one user.
OVERRIDE_COLUMNS = MappingProxyType(
    {
        "monthly_seconds": "monthly_seconds_override",
        "rpm": "rpm_override",
        "concurrent_streams": "streams_override",
    }
)


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: the plan's, unless the user has an override."""

    plan: int
    override: int | None = None

    @property
    def value(self) -> int:
        return self.plan if self.override is None else self.override

    @property
    def source(self) -> str:
        """``plan`` or ``override``: where ``value`` comes from."""
        return "plan" if self.override is None else "override"


def quota_ms_of(monthly_seconds: Limit, credit_ms: int) -> int:
    """This cycle's seconds, in ms: the monthly limit plus the operators' credit."""
    return 1000 * monthly_seconds.value + credit_ms


@dataclass(frozen=True, slots=True)
class QuotaView:
    """Used, live reserved and what is left of a cycle's quota."""

    quota_ms: int
    used_ms: int
    reserved_ms: int = 0

    @property
    def remaining_ms(self) -> int:
        return max(self.quota_ms - self.used_ms - self.reserved_ms, 0)

    def fits(self, estimate_ms: int) -> bool:
        return self.used_ms + self.reserved_ms + estimate_ms <= self.quota_ms


@dataclass(frozen=True, slots=True)
class Allowance:
    """A user's effective limits now: their plan's, their overrides, this cycle's credit."""

    plan_id: str
    monthly_seconds: Limit
    rpm: Limit
    concurrent_streams: Limit
    credit_ms: int = 0

    @property
    def quota_ms(self) -> int:
        return quota_ms_of(self.monthly_seconds, self.credit_ms)

    @property
    def limits(self) -> dict[str, Limit]:
        """By name, in ``LIMIT_NAMES`` order."""
        return {name: getattr(self, name) for name in LIMIT_NAMES}

    def quota(self, *, used_ms: int, reserved_ms: int = 0) -> QuotaView:
        return QuotaView(quota_ms=self.quota_ms, used_ms=used_ms, reserved_ms=reserved_ms)


def allowance_of(user: User, plan: Plan) -> Allowance:
    """``plan`` is the user's plan (or, for a plan change, the plan they move to)."""
    return Allowance(
        plan_id=plan.id,
        monthly_seconds=Limit(plan.monthly_seconds, user.monthly_seconds_override),
        rpm=Limit(plan.rpm, user.rpm_override),
        concurrent_streams=Limit(plan.max_streams, user.streams_override),
        credit_ms=user.credit_ms,
    )


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A user's quota as a speech job would see it now, with the cycle it belongs to.

    What the ``usage`` action tells a caller and ``quota show`` / ``users show`` tell
    an operator; each presents it in its own words.
    """

    user_id: int
    email: str
    allowance: Allowance
    quota: QuotaView
    cycle_start: dt.datetime
    cycle_end: dt.datetime

    @property
    def plan_id(self) -> str:
        return self.allowance.plan_id

    def cycle_dict(self) -> dict[str, str]:
        return {"start": self.cycle_start.isoformat(), "end": self.cycle_end.isoformat()}

    def to_dict(self) -> dict[str, Any]:
        """The operators' form (``quota show --json``)."""
        monthly, quota = self.allowance.monthly_seconds, self.quota
        return {
            "user": {"id": self.user_id, "email": self.email, "plan": self.plan_id},
            "plan_seconds": monthly.plan,
            "override_seconds": monthly.override,
            "credit_seconds": self.allowance.credit_ms / 1000,
            "quota_seconds": quota.quota_ms / 1000,
            "used_seconds": quota.used_ms / 1000,
            "reserved_seconds": quota.reserved_ms / 1000,
            "remaining_seconds": quota.remaining_ms / 1000,
            "cycle": self.cycle_dict(),
        }


def live_after(now: dt.datetime, lease_ttl: dt.timedelta) -> dt.datetime:
    """Reservations made after this still count against the quota."""
    return now - lease_ttl


async def live_reserved_ms(
    session: AsyncSession,
    *,
    user_id: int,
    now: dt.datetime,
    lease_ttl: dt.timedelta,
    exclude_job: str | None = None,
) -> int:
    """The sum of the user's live reservations (one indexed query)."""
    stmt = select(func.coalesce(func.sum(Usage.estimated_ms), 0)).where(
        Usage.user_id == user_id,
        Usage.status == RESERVED,
        Usage.reserved_at > live_after(now, lease_ttl),
    )
    if exclude_job is not None:
        stmt = stmt.where(Usage.job_id != exclude_job)
    return int((await session.execute(stmt)).scalar_one())


async def read_quota_state(
    session: AsyncSession, user: User, plan: Plan, *, now: dt.datetime, lease_ttl: dt.timedelta
) -> QuotaState:
    """The user's quota now; ``user`` and ``plan`` are rows already loaded in ``session``."""
    reserved = await live_reserved_ms(session, user_id=user.id, now=now, lease_ttl=lease_ttl)
    allowance = allowance_of(user, plan)
    return QuotaState(
        user_id=user.id,
        email=user.email,
        allowance=allowance,
        quota=allowance.quota(used_ms=user.used_ms, reserved_ms=reserved),
        cycle_start=user.cycle_start,
        cycle_end=user.cycle_end,
    )
