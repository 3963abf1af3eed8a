"""Operators' quota and billing: a user's quota, credits, cycle resets, usage reports.

Used by ``admin.py quota ...``, ``admin.py usage report`` and ``scripts/reset_quotas.py``.
Every write is one short transaction holding the user's row lock (``FOR UPDATE``; the
SQLite engine takes ``BEGIN IMMEDIATE``), the same lock a speech job's reserve and
settle take, so all of this is safe while traffic flows:

``adjust_quota``  changes ``users.credit_ms`` and writes its ``quota_adjustments`` row
                  in the same transaction: no credit without its audit row.
``reset_user``    closes the current cycle now (an operator's decision).
``reset_due``     the scheduled reset: every user whose ``cycle_end`` has passed,
                  ``RESET_BATCH`` users per transaction and per statement, the condition
                  re-checked under the locks; the unique (user_id, cycle_start) of
                  ``billing_cycles`` backs that up. Running it twice, or twice at once,
                  archives each cycle once.

A job reserved before a reset and settled after it adds its real seconds to the NEW
cycle's ``used_ms`` (settle adds to whatever the counter holds): late, never lost.
Reservations are ``usage`` rows, not a counter, so a reset moves nothing else.

A user whose reset was missed for several cycles gets ONE archive row spanning them
all (``cycle_start`` of the oldest to the start of the current cycle): ``used_ms``
accumulated over that whole time and cannot honestly be split afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, cast, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.accounts import find_user
from odeatts.allowance import QuotaState, allowance_of, read_quota_state
from odeatts.cycles import CycleArchive, archive_cycle, next_month, roll_ended_cycles, start_cycle
from odeatts.db import Sessions, on_postgres, stream_rows
from odeatts.errors import AdminError
from odeatts.metering import abandon_stale, drain_outbox
from odeatts.models import (
    FAILED,
    REFUSED,
    SUCCEEDED,
    Plan,
    QuotaAdjustment,
    Usage,
    User,
    Voice,
    utcnow,
)
from odeatts.outbox import Outbox

__all__ = [
    "MAX_ADJUST_SECONDS",
    "RESET_BATCH",
    "ClonePreviews",
    "CycleArchive",
    "Prices",
    "QuotaState",
    "ReportStream",
    "ReportTotals",
    "ResetSummary",
    "UsageLine",
    "UsageReport",
    "adjust_quota",
    "is_hd",
    "parse_period",
    "parse_seconds",
    "quota_state",
    "reset_due",
    "reset_user",
    "usage_report",
    "usage_report_stream",
]

log = logging.getLogger(__name__)


# A single adjustment above this is far more likely a typo than a deal (about 115 days
# of audio); an operator can still make several.
MAX_ADJUST_SECONDS = 10_000_000


# --- what the functions return -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResetSummary:
    now: dt.datetime
    due: int  # users found due before taking any lock
    archives: list[CycleArchive]
    abandoned: int = 0  # dead workers' reservations given a final status
    outbox_settled: int = 0  # charges kept in the outbox while Postgres was away

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "users_reset": len(self.archives),
            "users": [a.to_dict() for a in self.archives],
            "abandoned_reservations": self.abandoned,
            "outbox_settled": self.outbox_settled,
        }


@dataclass(frozen=True, slots=True)
class Prices:
    """What MiniMax charges us, USD per million billed characters."""

    turbo_per_million: float
    hd_per_million: float

    def cost_usd(self, chars: int, hd_chars: int) -> float:
        """MiniMax's price of ``chars`` billed characters, ``hd_chars`` of them by hd models."""
        cost = hd_chars * self.hd_per_million + (chars - hd_chars) * self.turbo_per_million
        return round(cost / 1_000_000, 6)


def is_hd(model: Any) -> Any:
    """The SQL test of a model column: hd models are priced apart (``Prices``)."""
    return model.contains("-hd")


@dataclass(slots=True)  # not frozen: a report makes 100,000 of them, frozen costs 2.5x
class UsageLine:
    user_id: int
    email: str
    plan_id: str
    requests: int
    succeeded: int
    failed: int
    refused: int
    duration_ms: int
    billed_characters: int
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "email": self.email,
            "plan": self.plan_id,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "refused": self.refused,
            "seconds": self.duration_ms / 1000,
            "billed_characters": self.billed_characters,
            "cost_usd": self.cost_usd,
        }

    def values(self) -> tuple[Any, ...]:
        """``to_dict().values()`` without the dict (a CSV row)."""
        return (
            self.user_id,
            self.email,
            self.plan_id,
            self.requests,
            self.succeeded,
            self.failed,
            self.refused,
            self.duration_ms / 1000,
            self.billed_characters,
            self.cost_usd,
        )


@dataclass(frozen=True, slots=True)
class ClonePreviews:
    """What clone previews made in the period cost us: MiniMax bills a preview's characters
    like a synthesis (``voices.preview_characters``, priced by ``preview_model``). They
    belong to no user. The clone itself MiniMax bills at its first use (not counted here);
    a clone whose reply was lost has no known preview cost."""

    previews: int
    preview_characters: int
    cost_usd: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "previews": self.previews,
            "preview_characters": self.preview_characters,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class UsageReport:
    start: dt.datetime
    end: dt.datetime
    prices: Prices
    lines: list[UsageLine]
    clones: ClonePreviews | None = None  # None in a one-user report

    def totals(self) -> dict[str, Any]:
        totals = ReportTotals()
        for line in self.lines:
            totals.add(line)
        return totals.to_dict()

    def period(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "timezone": "UTC"}


# --- input an operator types -------------------------------------------------------------


def parse_seconds(text: str) -> int:
    """``+90``, ``-30`` or ``1.5`` seconds as non-zero milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise AdminError(f"--seconds must be a number, like 60 or -30: {text!r}") from None
    if not math.isfinite(seconds) or abs(seconds) > MAX_ADJUST_SECONDS:
        raise AdminError(
            f"--seconds must be between -{MAX_ADJUST_SECONDS:,} and "
            f"{MAX_ADJUST_SECONDS:,}: {text!r}"
        )
    delta_ms = round(seconds * 1000)
    if delta_ms == 0:
        raise AdminError("--seconds must not be zero")
    return delta_ms


def _instant(text: str, option: str) -> dt.datetime:
    """A date (midnight UTC) or an ISO timestamp; a timestamp without offset is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(
            f"{option} must be a date like 2026-11-01 or an ISO timestamp: {text!r}"
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _month_start(moment: dt.datetime) -> dt.datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def parse_period(
    start: str | None, end: str | None, *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """[from, to) in UTC. Neither: this calendar month. Only --to: the calendar month
    that ends there. Only --from: from then to the end of this month."""
    end_at = _instant(end, "--to") if end else next_month(_month_start(now))
    start_at = (
        _instant(start, "--from") if start else _month_start(end_at - dt.timedelta(microseconds=1))
    )
    if start_at >= end_at:
        raise AdminError(
            f"--from ({start_at.isoformat()}) must be before --to ({end_at.isoformat()})"
        )
    return start_at, end_at


def _clean(text: str | None, option: str, *, limit: int) -> str:
    value = (text or "").strip()
    if not value:
        raise AdminError(f"{option} is required and must not be empty")
    if len(value) > limit:
        raise AdminError(f"{option} must be at most {limit} characters")
    return value


# --- the user, found and locked ----------------------------------------------------------


async def _find(session: AsyncSession, user: str, *, lock: bool) -> tuple[User, Plan]:
    found = await find_user(session, user, lock=lock)
    plan = await session.get(Plan, found.plan_id)
    assert plan is not None  # a foreign key
    return found, plan


# --- show and adjust ---------------------------------------------------------------------


async def quota_state(
    sessions: Sessions, *, user: str, lease_ttl: dt.timedelta, now: dt.datetime | None = None
) -> QuotaState:
    """What a speech job would see now: reserved = live reservations younger than the TTL."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        found, plan = await _find(session, user, lock=False)
        return await read_quota_state(session, found, plan, now=now, lease_ttl=lease_ttl)


async def adjust_quota(
    sessions: Sessions,
    *,
    user: str,
    delta_ms: int,
    reason: str | None,
    actor: str,
    lease_ttl: dt.timedelta,
    now: dt.datetime | None = None,
) -> tuple[QuotaAdjustment, QuotaState]:
    """Grant (positive) or take back (negative) seconds for this cycle, with its audit row.

    The cycle's quota (plan or override plus credit) may not go below zero.
    """
    if delta_ms == 0:
        raise AdminError("--seconds must not be zero")
    reason = _clean(reason, "--reason", limit=2000)
    actor = _clean(actor, "--actor", limit=100)
    now = now or utcnow()
    async with sessions() as session, session.begin():
        found, plan = await _find(session, user, lock=True)
        quota_ms = allowance_of(found, plan).quota_ms
        if quota_ms + delta_ms < 0:
            raise AdminError(
                f"cannot take back {-delta_ms / 1000:g} s: this cycle's quota is "
                f"{quota_ms / 1000:g} s"
            )
        found.credit_ms += delta_ms
        row = QuotaAdjustment(
            user_id=found.id, delta_ms=delta_ms, reason=reason, actor=actor, created_at=now
        )
        session.add(row)
        await session.flush()
        state = await read_quota_state(session, found, plan, now=now, lease_ttl=lease_ttl)
    log.info("quota of user %s adjusted by %d ms by %s", found.id, delta_ms, actor)
    return row, state


# --- resets ------------------------------------------------------------------------------


async def reset_user(
    sessions: Sessions, *, user: str, now: dt.datetime | None = None
) -> CycleArchive:
    """Close the user's current cycle now and start a new one from now."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        found, plan = await _find(session, user, lock=True)
        if found.cycle_start >= now:
            raise AdminError(
                f"the current cycle of {found.email} starts at "
                f"{found.cycle_start.isoformat()}; there is nothing to close"
            )
        archive = await archive_cycle(session, found, plan, end=now, now=now)
        if archive is None:
            raise AdminError(
                f"the cycle of {found.email} starting "
                f"{found.cycle_start.isoformat()} is already archived"
            )
        start_cycle(found, archive)
    log.info("cycle of user %s reset by an operator", archive.user_id)
    return archive


# Users reset per transaction (four statements: lock, archive, restart). A batch holds
# these users' row locks for a few tens of milliseconds; a speech job of one of them
# waits that long (its lock timeout is seconds). 100,000 due users: 200 batches.
RESET_BATCH = 500


async def reset_due(
    sessions: Sessions,
    *,
    now: dt.datetime | None = None,
    stale_after: dt.timedelta | None = None,
    outbox: Outbox | None = None,
    batch_size: int = RESET_BATCH,
) -> ResetSummary:
    """The scheduled reset: idempotent, and safe to run concurrently with itself.

    ``batch_size`` users per transaction, set-based (``cycles.roll_ended_cycles``), in
    user id order. With ``outbox`` it first applies the charges workers kept there
    while Postgres was away (before a cycle is archived, so they count in the cycle
    they belong to). With ``stale_after`` (the lease TTL) it also closes dead workers'
    reservations.
    """
    now = now or utcnow()
    settled = await drain_outbox(sessions, outbox) if outbox is not None else 0
    async with sessions() as session:
        due = (
            await session.execute(select(func.count()).where(User.cycle_end <= now))
        ).scalar_one()
    archives: list[CycleArchive] = []
    after = 0
    while True:
        async with sessions() as session, session.begin():
            batch = await roll_ended_cycles(session, now=now, after=after, limit=batch_size)
        if batch.last_id is None:
            break
        archives.extend(batch.archives)
        for user_id in batch.already_archived:
            # Only possible if the data was edited by hand: keep the counters, say so.
            log.error("user %s: the ended cycle is already archived; not reset", user_id)
        after = batch.last_id
    log.info("quota reset: %d of %d due users reset", len(archives), due)
    abandoned = 0
    if stale_after is not None:
        abandoned = await abandon_stale(sessions, now=now, stale_after=stale_after)
    return ResetSummary(
        now=now, due=due, archives=archives, abandoned=abandoned, outbox_settled=settled
    )


# --- the usage report ----------------------------------------------------------------------


class ReportTotals:
    """The report's totals, added up line by line as the lines stream past."""

    def __init__(self) -> None:
        self.users = self.requests = self.succeeded = self.failed = self.refused = 0
        self.billed_characters = self.duration_ms = 0
        self.cost_usd = 0.0

    def add(self, line: UsageLine) -> None:
        self.users += 1
        self.requests += line.requests
        self.succeeded += line.succeeded
        self.failed += line.failed
        self.refused += line.refused
        self.billed_characters += line.billed_characters
        self.duration_ms += line.duration_ms
        self.cost_usd += line.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "refused": self.refused,
            "billed_characters": self.billed_characters,
            "seconds": self.duration_ms / 1000,
            "cost_usd": round(self.cost_usd, 6),
        }


def _lines_query(start: dt.datetime, end: dt.datetime, user_id: int | None) -> Any:
    """ONE grouped query over the period, joined to the users: each row of the period
    is read once, whatever the number of users (it was read once per batch of 500
    users: 14.4 s at 10M rows, issue 14). With ``user_id``, that user's rows only, and
    the user even without any (LEFT JOIN: zeros)."""

    def count(status: str) -> Any:
        return func.count().filter(Usage.status == status)

    hd = is_hd(Usage.model)
    grouped = select(
        Usage.user_id.label("user_id"),
        func.count().label("requests"),
        count(SUCCEEDED).label("succeeded"),
        count(FAILED).label("failed"),
        count(REFUSED).label("refused"),
        func.sum(Usage.duration_ms).filter(Usage.status == SUCCEEDED).label("duration_ms"),
        func.sum(Usage.billed_characters).label("chars"),
        func.sum(Usage.billed_characters).filter(hd).label("hd_chars"),
    ).where(Usage.created_at >= start, Usage.created_at < end)
    if user_id is not None:
        grouped = grouped.where(Usage.user_id == user_id)
    totals = grouped.group_by(Usage.user_id).subquery("totals")
    stmt = (
        select(
            User.id,
            User.email,
            User.plan_id,
            *(  # whole numbers from both backends (Postgres sums bigints as numeric)
                cast(func.coalesce(totals.c[name], 0), BigInteger)
                for name in (
                    "requests",
                    "succeeded",
                    "failed",
                    "refused",
                    "duration_ms",
                    "chars",
                    "hd_chars",
                )
            ),
        )
        .select_from(User)
        .join(totals, totals.c.user_id == User.id, isouter=user_id is not None)
        .order_by(User.id)
    )
    return stmt if user_id is None else stmt.where(User.id == user_id)


def _line(row: Sequence[Any], prices: Prices) -> UsageLine:
    """A report row (``_lines_query``'s columns, whole numbers) as a line."""
    user_id, email, plan_id, requests, succeeded, failed, refused, ms, chars, hd_chars = row
    cost = prices.cost_usd(chars, hd_chars)
    return UsageLine(user_id, email, plan_id, requests, succeeded, failed, refused, ms, chars, cost)


async def _clone_previews(
    session: AsyncSession, *, start: dt.datetime, end: dt.datetime, prices: Prices
) -> ClonePreviews:
    chars = Voice.preview_characters
    row = (
        await session.execute(
            select(
                func.count(chars),
                func.coalesce(func.sum(chars), 0),
                func.coalesce(func.sum(chars).filter(is_hd(Voice.preview_model)), 0),
            ).where(chars.is_not(None), Voice.created_at >= start, Voice.created_at < end)
        )
    ).one()
    previews, total, hd = (int(value or 0) for value in row)
    return ClonePreviews(
        previews=previews, preview_characters=total, cost_usd=prices.cost_usd(total, hd)
    )


@dataclass(frozen=True, slots=True)
class ReportStream:
    """A usage report whose lines arrive from the database as they are read
    (``db.stream_rows``): memory stays constant however many users."""

    start: dt.datetime
    end: dt.datetime
    prices: Prices
    clones: ClonePreviews | None  # None in a one-user report
    lines: AsyncIterator[UsageLine]

    def period(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "timezone": "UTC"}


async def _streamed(rows: AsyncIterator[Sequence[Any]], prices: Prices) -> AsyncIterator[UsageLine]:
    async for row in rows:
        yield _line(row, prices)


# For the report's transaction only (SET LOCAL): one hash aggregate over the period, in
# memory (a group is ~300 bytes; 100,000 users take ~40 MB per parallel worker).
_REPORT_SETTINGS = ("SET LOCAL work_mem = '128MB'",)


@asynccontextmanager
async def usage_report_stream(
    sessions: Sessions,
    *,
    start: dt.datetime,
    end: dt.datetime,
    prices: Prices,
    user: str | None = None,
) -> AsyncIterator[ReportStream]:
    """Per-user totals of the usage rows created in [start, end), one line per user
    with rows in the period (or just ``user``), by user id, read while the caller
    writes them. Without ``user``, also what the clone previews made in the period
    cost. One read-only transaction: the lines are one snapshot."""
    async with sessions() as session, session.begin():
        user_id = None if user is None else (await _find(session, user, lock=False))[0].id
        clones = (
            None
            if user is not None
            else await _clone_previews(session, start=start, end=end, prices=prices)
        )
        if on_postgres(session):
            for setting in _REPORT_SETTINGS:
                await session.execute(text(setting))
        # Core rows from the connection: the ORM's loading layer costs more than the
        # rest of the Python side for 100,000 lines.
        connection = await session.connection()
        rows = stream_rows(connection, _lines_query(start, end, user_id))
        try:
            yield ReportStream(
                start=start,
                end=end,
                prices=prices,
                clones=clones,
                lines=_streamed(rows, prices),
            )
        finally:
            await rows.aclose()


async def usage_report(
    sessions: Sessions,
    *,
    start: dt.datetime,
    end: dt.datetime,
    prices: Prices,
    user: str | None = None,
) -> UsageReport:
    """``usage_report_stream``, every line in memory (for a table, or one user)."""
    async with usage_report_stream(
        sessions, start=start, end=end, prices=prices, user=user
    ) as stream:
        lines = [line async for line in stream.lines]
    return UsageReport(start=start, end=end, prices=prices, lines=lines, clones=stream.clones)
