"""The service at a glance, from the usage ledger (``admin.py stats``).

For a window ``[now - since, now)`` by ``usage.created_at`` (served by
``ix_usage_created_at``), optionally one user's rows:

jobs          by outcome (``status``) and by error code
refusals      rate, concurrency, quota and upstream_busy, each as a count and a share of
              the jobs. All four are on the ledger: the quota refusal is the ``refused``
              row the reservation writes; the other three are refused at admission
              (Redis), after the reservation, which is released as ``refused`` with the
              code (``upstream_busy`` of a long text's later part, ``failed``)
times         p50/p95/p99 of the worker's and MiniMax's milliseconds of the jobs that
              succeeded (``worker_ms``, ``upstream_ms``, recorded by the settle)
delivered     audio seconds, billed characters and MiniMax's cost; seconds by plan (the
              user's plan now); the busiest users by seconds
alerts        MiniMax account failures (``upstream_alert = 'account'``) and the error
              rate: jobs that failed on our side or MiniMax's (``ServiceError`` codes, and
              ``abandoned``) over the jobs that were not refused

and, now rather than in the window: users above 80% of their quota (an upsell list) and
clones MiniMax deletes within 2 days (catalogue.voice_statuses).

Each figure is one grouped statement that both backends run as written, except the
percentiles: ``percentile_cont`` on Postgres; SQLite has none, so its values are read in
order and cut by ``statistics.quantiles(method="inclusive")``, the same interpolation
(the embedded ledger is small). ``render_prometheus`` writes the same figures in
Prometheus' text format; ``breaches`` is what ``stats --check`` pages on.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, desc, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.accounts import find_user
from odeatts.allowance import Limit, quota_ms_of
from odeatts.billing import Prices, is_hd
from odeatts.catalogue import voice_statuses
from odeatts.db import Sessions, database_errors
from odeatts.errors import ERROR_CODES, AdminError, ServiceError
from odeatts.minimax import ACCOUNT
from odeatts.models import SUCCEEDED, Plan, Usage, User, utcnow

__all__ = [
    "QUANTILES",
    "REFUSALS",
    "CacheLedger",
    "Stats",
    "Thresholds",
    "breaches",
    "cache_ledger",
    "collect",
    "parse_since",
    "render_prometheus",
]

# Refusal kind -> the error code its usage row carries.
REFUSALS = {
    "rate": "rate_limited",
    "concurrency": "concurrency_limited",
    "quota": "quota_exceeded",
    "upstream_busy": "upstream_busy",
}
QUANTILES = (0.5, 0.95, 0.99)
NEAR_QUOTA = 0.8  # users at or above this share of their quota are listed
CLONE_PAGE = dt.timedelta(hours=24)  # --check pages for a clone expiring within this
MAX_WINDOW = dt.timedelta(days=90)
# Failures on our side or MiniMax's, and a worker that died mid-job.
SERVICE_CODES = frozenset(
    {code for code, error in ERROR_CODES.items() if issubclass(error, ServiceError)} | {"abandoned"}
)
_SINCE = re.compile(r"(\d{1,4})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> dt.timedelta:
    """``30m``, ``1h``, ``24h``, ``7d``: the window's length (at most 90 days)."""
    match = _SINCE.fullmatch(text.strip())
    if match is None:
        raise AdminError(f"--since {text!r}: give minutes, hours or days, e.g. 1h, 24h, 7d")
    window = dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    if not dt.timedelta(0) < window <= MAX_WINDOW:
        raise AdminError(f"--since {text!r}: from 1 minute to {MAX_WINDOW.days} days")
    return window


@dataclass(frozen=True)
class Thresholds:
    """What ``stats --check`` pages on."""

    error_rate: float = 0.05
    account_errors: int = 1
    clone_within: dt.timedelta = CLONE_PAGE


@dataclass
class Stats:
    start: dt.datetime
    end: dt.datetime
    user_id: int | None
    outcomes: dict[str, int] = field(default_factory=dict)  # status -> jobs
    errors: dict[str, int] = field(default_factory=dict)  # error code -> jobs
    account_errors: int = 0
    # "worker" / "upstream" -> p50, p95, p99 in ms (None without data)
    times_ms: dict[str, list[float | None]] = field(default_factory=dict)
    audio_ms: int = 0
    billed_characters: int = 0
    cost_usd: float = 0.0
    seconds_by_plan: dict[str, float] = field(default_factory=dict)
    busiest: list[dict[str, Any]] = field(default_factory=list)
    near_quota: list[dict[str, Any]] = field(default_factory=list)
    expiring_clones: list[dict[str, Any]] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return sum(self.outcomes.values())

    @property
    def refusals(self) -> dict[str, int]:
        return {kind: self.errors.get(code, 0) for kind, code in REFUSALS.items()}

    def refusal_rates(self) -> dict[str, float]:
        return {kind: _share(count, self.jobs) for kind, count in self.refusals.items()}

    @property
    def service_errors(self) -> int:
        return sum(n for code, n in self.errors.items() if code in SERVICE_CODES)

    @property
    def error_rate(self) -> float:
        """Jobs failed on our side or MiniMax's, of the jobs that were not refused."""
        return _share(self.service_errors, self.jobs - self.outcomes.get("refused", 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "user_id": self.user_id,
            "jobs": {"total": self.jobs, "by_outcome": self.outcomes, "by_error": self.errors},
            "refusals": {
                kind: {"jobs": n, "rate": self.refusal_rates()[kind]}
                for kind, n in self.refusals.items()
            },
            "error_rate": self.error_rate,
            "minimax_account_errors": self.account_errors,
            "times_ms": {
                name: dict(zip(_quantile_names(), values, strict=True))
                for name, values in self.times_ms.items()
            },
            "audio_seconds": self.audio_ms / 1000,
            "billed_characters": self.billed_characters,
            "minimax_cost_usd": self.cost_usd,
            "seconds_by_plan": self.seconds_by_plan,
            "busiest_users": self.busiest,
            "users_near_quota": self.near_quota,
            "expiring_clones": self.expiring_clones,
        }


@dataclass(frozen=True, slots=True)
class CacheLedger:
    """The audio cache in the ledger, for a window: jobs served from it (hits), jobs
    MiniMax made (misses: every other job that succeeded), and what the hits saved:
    the characters MiniMax billed for their original calls, at MiniMax's prices."""

    hits: int
    misses: int
    saved_characters: int
    saved_usd: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": _share(self.hits, self.hits + self.misses),
            "saved_characters": self.saved_characters,
            "minimax_cost_saved_usd": self.saved_usd,
        }


async def cache_ledger(
    sessions: Sessions, *, start: dt.datetime, end: dt.datetime, prices: Prices
) -> CacheLedger:
    """One grouped statement over the window's succeeded rows (``ix_usage_created_at``)."""
    saved = Usage.saved_characters
    statement = (
        select(
            Usage.cached,
            func.count(),
            func.coalesce(func.sum(saved), 0),
            func.coalesce(func.sum(saved).filter(is_hd(Usage.model)), 0),
        )
        .where(Usage.created_at >= start, Usage.created_at < end, Usage.status == SUCCEEDED)
        .group_by(Usage.cached)
    )
    counts, chars, hd_chars = {True: 0, False: 0}, 0, 0
    with database_errors():
        async with sessions() as session:
            for cached, jobs, saved_chars, saved_hd in await session.execute(statement):
                counts[bool(cached)] = int(jobs)
                if cached:
                    chars, hd_chars = int(saved_chars or 0), int(saved_hd or 0)
    return CacheLedger(counts[True], counts[False], chars, prices.cost_usd(chars, hd_chars))


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _quantile_names() -> list[str]:
    return [f"p{round(q * 100)}" for q in QUANTILES]


async def collect(
    sessions: Sessions,
    *,
    since: dt.timedelta,
    prices: Prices,
    user: str | None = None,
    top: int = 5,
    now: dt.datetime | None = None,
) -> Stats:
    """Every figure for the window, read in one transaction (one snapshot on Postgres)."""
    end = now or utcnow()
    with database_errors():
        async with sessions() as session:
            user_id = None if user is None else (await find_user(session, user)).id
            stats = Stats(start=end - since, end=end, user_id=user_id)
            window = _window(stats)
            await _outcomes(session, stats, window)
            await _delivered(session, stats, window, prices)
            await _by_plan_and_user(session, stats, window, top)
            stats.times_ms = await _times(session, window)
            stats.near_quota = await _near_quota(session, user_id)
        if user_id is None:  # the catalogue is the service's, not a user's
            stats.expiring_clones = await _expiring_clones(sessions, end)
    return stats


async def _expiring_clones(sessions: Sessions, now: dt.datetime) -> list[dict[str, Any]]:
    return [
        {"name": s.voice.name, "expires_at": s.expires_at.isoformat()}
        for s in await voice_statuses(sessions, expiring=True, now=now)
        if s.expires_at is not None
    ]


def _window(stats: Stats) -> list[ColumnElement[bool]]:
    where = [Usage.created_at >= stats.start, Usage.created_at < stats.end]
    return where if stats.user_id is None else [*where, Usage.user_id == stats.user_id]


async def _outcomes(session: AsyncSession, stats: Stats, window: list[ColumnElement[bool]]) -> None:
    rows = await session.execute(
        select(Usage.status, Usage.error_code, Usage.upstream_alert, func.count())
        .where(*window)
        .group_by(Usage.status, Usage.error_code, Usage.upstream_alert)
    )
    for status, code, alert, count in rows:
        stats.outcomes[status] = stats.outcomes.get(status, 0) + count
        if code is not None:
            stats.errors[code] = stats.errors.get(code, 0) + count
        if alert == ACCOUNT:
            stats.account_errors += count
    stats.outcomes = dict(sorted(stats.outcomes.items()))
    stats.errors = dict(sorted(stats.errors.items(), key=lambda item: (-item[1], item[0])))


async def _delivered(
    session: AsyncSession, stats: Stats, window: list[ColumnElement[bool]], prices: Prices
) -> None:
    chars = Usage.billed_characters
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(Usage.duration_ms), 0),
                func.coalesce(func.sum(chars), 0),
                func.coalesce(func.sum(chars).filter(is_hd(Usage.model)), 0),
            ).where(*window, Usage.status == SUCCEEDED)
        )
    ).one()
    audio, chars_total, hd_chars = (int(value or 0) for value in row)
    stats.audio_ms, stats.billed_characters = audio, chars_total
    stats.cost_usd = prices.cost_usd(chars_total, hd_chars)


async def _by_plan_and_user(
    session: AsyncSession, stats: Stats, window: list[ColumnElement[bool]], top: int
) -> None:
    seconds = func.sum(Usage.duration_ms)
    succeeded = [*window, Usage.status == SUCCEEDED]
    plans = await session.execute(
        select(User.plan_id, seconds)
        .join(User, User.id == Usage.user_id)
        .where(*succeeded)
        .group_by(User.plan_id)
        .order_by(User.plan_id)
    )
    stats.seconds_by_plan = {plan: (ms or 0) / 1000 for plan, ms in plans}
    jobs = func.count()
    per_user = (
        select(Usage.user_id, jobs.label("jobs"), func.coalesce(seconds, 0).label("ms"))
        .where(*window)
        .group_by(Usage.user_id)
        .order_by(desc("ms"), desc("jobs"), Usage.user_id)
        .limit(top)
        .subquery()
    )
    busiest = await session.execute(
        select(per_user.c.user_id, User.email, User.plan_id, per_user.c.jobs, per_user.c.ms)
        .join(User, User.id == per_user.c.user_id)
        .order_by(desc(per_user.c.ms), desc(per_user.c.jobs), per_user.c.user_id)
    )
    stats.busiest = [
        {"user_id": uid, "email": email, "plan": plan, "jobs": n, "seconds": (ms or 0) / 1000}
        for uid, email, plan, n, ms in busiest
    ]


async def _times(
    session: AsyncSession, window: list[ColumnElement[bool]]
) -> dict[str, list[float | None]]:
    columns = {"worker": Usage.worker_ms, "upstream": Usage.upstream_ms}
    done = [*window, Usage.status == SUCCEEDED]
    if session.get_bind().dialect.name == "postgresql":
        row = (
            await session.execute(
                select(
                    *(
                        func.percentile_cont(q).within_group(column)
                        for column in columns.values()
                        for q in QUANTILES
                    )
                ).where(*done)
            )
        ).one()
        n = len(QUANTILES)
        return {
            name: [None if v is None else round(float(v), 1) for v in row[i * n : (i + 1) * n]]
            for i, name in enumerate(columns)
        }
    times = {}
    for name, column in columns.items():
        ordered = select(column).where(*done, column.is_not(None)).order_by(column)
        values = (await session.execute(ordered)).scalars()
        times[name] = percentiles([float(v) for v in values if v is not None])
    return times


def percentiles(values: Sequence[float]) -> list[float | None]:
    """``QUANTILES`` of ``values`` as Postgres' ``percentile_cont`` computes them
    (linear interpolation between the closest ranks), to 0.1 ms as both report them."""
    if len(values) < 2:
        return [values[0] if values else None for _ in QUANTILES]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [round(cuts[round(q * 100) - 1], 1) for q in QUANTILES]


def _near_quota_query(
    user_id: int | None,
) -> Select[int, str, str, int, int, int | None, int]:
    stmt = (
        select(
            User.id,
            User.email,
            User.plan_id,
            User.used_ms,
            User.credit_ms,
            User.monthly_seconds_override,
            Plan.monthly_seconds,
        )
        .join(Plan, Plan.id == User.plan_id)
        .where(User.active.is_(True), User.used_ms > 0)
        .order_by(User.id)
    )
    return stmt if user_id is None else stmt.where(User.id == user_id)


async def _near_quota(session: AsyncSession, user_id: int | None) -> list[dict[str, Any]]:
    """Active users at or above ``NEAR_QUOTA`` of this cycle's quota, fullest first.

    The quota rule is allowance.py's (one home); SQL only skips users who used nothing."""
    found = []
    for uid, email, plan, used, credit, override, plan_s in await session.execute(
        _near_quota_query(user_id)
    ):
        quota = quota_ms_of(Limit(plan_s, override), credit)
        if quota <= 0 or used >= NEAR_QUOTA * quota:
            share = 1.0 if quota <= 0 else round(used / quota, 4)
            found.append(
                {
                    "user_id": uid,
                    "email": email,
                    "plan": plan,
                    "used_seconds": used / 1000,
                    "quota_seconds": quota / 1000,
                    "share": share,
                }
            )
    return sorted(found, key=lambda u: (-u["share"], u["user_id"]))


def breaches(stats: Stats, thresholds: Thresholds) -> list[str]:
    """One line per thing to page on; none when all is well."""
    lines = []
    if stats.error_rate > thresholds.error_rate:
        lines.append(
            f"error rate {stats.error_rate:.1%} above {thresholds.error_rate:.1%} "
            f"({stats.service_errors} of {stats.jobs - stats.outcomes.get('refused', 0)} jobs)"
        )
    if stats.account_errors >= thresholds.account_errors:
        lines.append(
            f"minimax account errors: {stats.account_errors} jobs failed on our MiniMax "
            "account (key, balance, quota or plan); see the ALERT minimax account log lines"
        )
    for clone in stats.expiring_clones:
        expires = dt.datetime.fromisoformat(clone["expires_at"])
        if expires - stats.end <= thresholds.clone_within:
            lines.append(
                f"clone {clone['name']} expires at {expires:%Y-%m-%d %H:%M} UTC unless used: "
                "run a job with it, or re-clone"
            )
    return lines


# ------------------------------------------------------------------- Prometheus


def _label(value: object) -> str:
    """A label value as the text format escapes it."""
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Exposition:
    """Prometheus' text exposition format: a HELP and TYPE line per family, then samples."""

    def __init__(self, window: str) -> None:
        self.window = window
        self.lines: list[str] = []

    def family(self, name: str, help: str, samples: list[tuple[dict[str, object], float]]) -> None:
        self.lines += [f"# HELP odeatts_{name} {help}", f"# TYPE odeatts_{name} gauge"]
        for labels, value in samples:
            every = {"window": self.window, **labels}
            text = ",".join(f'{k}="{_label(v)}"' for k, v in every.items())
            self.lines.append(f"odeatts_{name}{{{text}}} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float) -> str:
    return "NaN" if value != value else repr(float(value))


def render_prometheus(stats: Stats, *, window: str) -> str:
    """The same figures as gauges labelled with the window (``window="24h"``): each is a
    figure of the last ``window``, recomputed by each run, so none is a counter."""
    out = _Exposition(window)
    _job_families(out, stats)
    _delivery_families(out, stats)
    return out.text()


_Samples = list[tuple[dict[str, object], float]]


def _by(label: str, figures: dict[str, Any]) -> _Samples:
    return [({label: key}, value) for key, value in figures.items()]


def _job_families(out: _Exposition, stats: Stats) -> None:
    out.family("jobs", "Jobs in the window by outcome.", _by("outcome", stats.outcomes))
    out.family("job_errors", "Jobs in the window by error code.", _by("code", stats.errors))
    out.family("refusals", "Jobs refused in the window, by kind.", _by("kind", stats.refusals))
    rates = stats.refusal_rates()
    out.family("refusal_ratio", "Refused jobs of all jobs, by kind.", _by("kind", rates))
    out.family(
        "error_ratio",
        "Jobs failed on our or MiniMax's side, of jobs not refused.",
        [({}, stats.error_rate)],
    )
    out.family(
        "minimax_account_errors",
        "Jobs failed on our MiniMax account.",
        [({}, stats.account_errors)],
    )
    for name, where in (("worker", "in the worker"), ("upstream", "at MiniMax")):
        values = [float("nan") if v is None else v for v in stats.times_ms.get(name, [])]
        out.family(
            f"{name}_milliseconds",
            f"Quantiles of succeeded jobs' time {where}.",
            _by("quantile", dict(zip(map(str, QUANTILES), values, strict=True))),
        )


def _delivery_families(out: _Exposition, stats: Stats) -> None:
    out.family("audio_seconds", "Audio seconds delivered.", [({}, stats.audio_ms / 1000)])
    out.family("billed_characters", "Characters MiniMax billed.", [({}, stats.billed_characters)])
    out.family("minimax_cost_usd", "What MiniMax charged, USD.", [({}, stats.cost_usd)])
    out.family(
        "plan_audio_seconds", "Audio seconds delivered by plan.", _by("plan", stats.seconds_by_plan)
    )
    busiest = {str(u["user_id"]): u["seconds"] for u in stats.busiest}
    out.family("user_audio_seconds", "The busiest users' audio seconds.", _by("user_id", busiest))
    near = {str(u["user_id"]): u["share"] for u in stats.near_quota}
    out.family(
        "user_quota_ratio", "Users above 80% of their quota: used of quota.", _by("user_id", near)
    )
    left = {
        c["name"]: (dt.datetime.fromisoformat(c["expires_at"]) - stats.end).total_seconds()
        for c in stats.expiring_clones
    }
    out.family(
        "clone_expiry_seconds", "Seconds until MiniMax deletes an unused clone.", _by("voice", left)
    )
