"""``admin.py quota``: a user's seconds this cycle, credits, and cycle resets.

    quota show      --user U [--json]
    quota adjust    --user U --seconds ±N --reason TEXT [--actor NAME] [--json]
    quota reset     --user U [--json]
    quota reset-due [--json]          (also scripts/reset_quotas.py, for cron)

``--user`` is a user id or an email (any case). Required options are declared so
(``--help`` marks them); leaving one out is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from odeatts import billing
from odeatts.audio_cache import LocalStore, build_cache
from odeatts.cli.common import (
    JSON,
    OneLineErrors,
    emit,
    fail,
    print_whole,
    redis_client,
    run,
    say,
    seconds,
    settings,
    table,
    utc,
)
from odeatts.config import Settings
from odeatts.db import Sessions
from odeatts.errors import AdminError
from odeatts.outbox import RedisOutbox

__all__ = ["app"]

app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, help="A user's seconds, credits and billing cycles."
)

USER = typer.Option(..., "--user", help="A user id or email.")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _lease_ttl() -> dt.timedelta:
    return dt.timedelta(seconds=settings().lease_ttl_seconds)


def _state_table(title: str, state: billing.QuotaState) -> Table:
    """The JSON's fields, in the units every view uses."""
    monthly, quota = state.allowance.monthly_seconds, state.quota
    rows: list[list[object]] = [
        ["user", f"{state.email} (id {state.user_id})"],
        ["plan", state.plan_id],
        ["plan_seconds", monthly.plan],
        ["override_seconds", "none" if monthly.override is None else monthly.override],
        ["credit_seconds", seconds(state.allowance.credit_ms / 1000)],
        ["quota_seconds", seconds(quota.quota_ms / 1000)],
        ["used_seconds", seconds(quota.used_ms / 1000)],
        ["reserved_seconds", seconds(quota.reserved_ms / 1000)],
        ["remaining_seconds", seconds(quota.remaining_ms / 1000)],
        ["cycle_start", utc(state.cycle_start)],
        ["cycle_end", utc(state.cycle_end)],
    ]
    return table(title, ["field", "value"], rows)


@app.command("show")
def show(user: str = USER, as_json: bool = JSON) -> None:
    """Plan seconds, override, credit, used, live reserved and remaining; the cycle."""
    ttl = _lease_ttl()
    state = run(lambda s: billing.quota_state(s, user=user, lease_ttl=ttl))
    emit(state.to_dict(), as_json, _state_table("quota", state))


@app.command("adjust")
def adjust(
    user: str = USER,
    delta: str = typer.Option(
        ...,
        "--seconds",
        metavar="±SECONDS",
        help="Seconds to grant (+) or take back (-) for this cycle.",
    ),
    reason: str = typer.Option(..., "--reason", help="Why; kept in the audit trail."),
    actor: str = typer.Option(None, "--actor", help="Who; default: the OS user."),
    as_json: bool = JSON,
) -> None:
    """Grant or take back seconds for this cycle (audited; seen by the next job)."""
    ttl = _lease_ttl()
    try:
        delta_ms = billing.parse_seconds(delta)
    except AdminError as exc:
        fail(str(exc))
    row, state = run(
        lambda s: billing.adjust_quota(
            s, user=user, delta_ms=delta_ms, reason=reason, actor=actor or _os_user(), lease_ttl=ttl
        )
    )
    data = {
        "adjustment": {
            "id": row.id,
            "user_id": row.user_id,
            "seconds": row.delta_ms / 1000,
            "reason": row.reason,
            "actor": row.actor,
            "created_at": row.created_at.isoformat(),
        },
        "quota": state.to_dict(),
    }
    sign = "+" if row.delta_ms > 0 else ""
    emit(
        data,
        as_json,
        _state_table(f"quota adjusted by {sign}{seconds(row.delta_ms / 1000)} s", state),
    )


def _archive_table(title: str, archives: list[billing.CycleArchive]) -> Table:
    result = Table(
        "id",
        "email",
        "archived from",
        "to",
        "used s",
        "credit s",
        "next reset",
        title=title,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for a in archives:
        result.add_row(
            str(a.user_id),
            escape(a.email),
            utc(a.cycle_start),
            utc(a.cycle_end),
            seconds(a.used_ms / 1000),
            seconds(a.credit_ms / 1000),
            utc(a.new_end),
        )
    return result


@app.command("reset")
def reset(user: str = USER, as_json: bool = JSON) -> None:
    """Archive the user's current cycle and start a new one now (used and credit to 0)."""
    archive = run(lambda s: billing.reset_user(s, user=user))
    if as_json:
        emit(archive.to_dict(), True)
    else:
        print_whole(_archive_table("cycle reset", [archive]))


async def _sweep_cache(config: Settings) -> int:
    """The local audio cache's entries past ODEATTS_CACHE_TTL_DAYS, and its size cap
    (a bucket expires entries by its own lifecycle rule: ``cache lifecycle``)."""
    cache = build_cache(config)
    if cache is None or not isinstance(cache.store, LocalStore):
        return 0
    swept = await cache.sweep()
    await asyncio.to_thread(cache.store.cap, cache.store.max_bytes)
    return swept


@app.command("reset-due")
def reset_due(as_json: bool = JSON) -> None:
    """Start the next cycle of every user whose cycle has ended, and close dead workers'
    reservations (idempotent; for cron)."""
    config = settings()
    stale = dt.timedelta(seconds=config.lease_ttl_seconds)

    async def reset(sessions: Sessions) -> billing.ResetSummary:
        redis = redis_client(config)
        if redis is None:  # the embedded default keeps no outbox here
            return await billing.reset_due(sessions, stale_after=stale)
        try:
            outbox = RedisOutbox(redis, prefix=config.redis_prefix)
            return await billing.reset_due(sessions, stale_after=stale, outbox=outbox)
        finally:
            await redis.aclose()

    summary = run(reset)
    swept = run(lambda _: _sweep_cache(config))
    if as_json:
        emit({**summary.to_dict(), "cache_entries_expired": swept}, True)
        return
    say(
        f"{len(summary.archives)} user(s) reset at {utc(summary.now)}; "
        f"{summary.abandoned} abandoned reservation(s) closed; "
        f"{summary.outbox_settled} outbox charge(s) applied; "
        f"{swept} expired cache entr{'y' if swept == 1 else 'ies'} removed",
        markup=False,
    )
    if summary.archives:
        print_whole(_archive_table("cycles archived", summary.archives))
