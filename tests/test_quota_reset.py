"""The monthly reset (``quota reset-due`` and ``scripts/reset_quotas.py``): idempotent,
safe with itself, and safe while speech jobs run: no second of usage is lost at the
cycle boundary and every finished cycle is archived exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row, select, text

from minimax_emulator import Emulator
from odeatts import billing
from odeatts.accounts import next_month
from odeatts.config import Settings
from odeatts.db import make_engine, make_sessionmaker
from odeatts.models import BillingCycle, Usage, User, utcnow
from tests.conftest import JobRunner, UserFactory
from tests.support.cli import Invoke, cli_env
from tests.support.proxy import TcpProxy
from tests.test_admin_cli import UNREACHABLE

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Good evening, Abuja. The last bus leaves at ten."


def rows(engine: Engine, table: Any) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(select(table.__table__).order_by(table.id)).all())


def reset_in_own_engine(url: str, now: dt.datetime | None = None) -> billing.ResetSummary:
    """What a cron host does: its own process (here a thread), engine and event loop."""

    async def main() -> billing.ResetSummary:
        engine = make_engine(url, pool_size=2)
        try:
            return await billing.reset_due(make_sessionmaker(engine), now=now)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def ended(days_ago: float = 1, *, length: int = 30) -> dict[str, dt.datetime]:
    """Fields for make_user: a cycle that ended ``days_ago`` days ago."""
    end = utcnow() - dt.timedelta(days=days_ago)
    return {"cycle_start": end - dt.timedelta(days=length), "cycle_end": end}


# --- reset-due -------------------------------------------------------------------------------


async def test_reset_due_archives_ended_cycles_once(
    invoke: Invoke, engine: Engine, make_user: UserFactory
) -> None:
    due = ended(days_ago=0.5)
    due_id, _ = await make_user("basic", used_ms=1_234_000, credit_ms=60_000, **due)
    current_id, _ = await make_user(used_ms=5_000, credit_ms=1_000)

    first = await asyncio.to_thread(invoke, "quota", "reset-due", "--json")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["users_reset"] == 1 and data["users"][0]["user"]["id"] == due_id
    [cycle] = rows(engine, BillingCycle)
    assert (cycle.user_id, cycle.cycle_start, cycle.cycle_end) == (
        due_id,
        due["cycle_start"],
        due["cycle_end"],
    )
    assert (cycle.used_ms, cycle.credit_ms, cycle.quota_ms) == (1_234_000, 60_000, 3_660_000)
    users = {u.id: u for u in rows(engine, User)}
    reset = users[due_id]
    assert (reset.used_ms, reset.credit_ms) == (0, 0)
    assert reset.cycle_start == due["cycle_end"]
    assert reset.cycle_end == next_month(due["cycle_end"]) > utcnow()
    assert (users[current_id].used_ms, users[current_id].credit_ms) == (5_000, 1_000)

    snapshot = (rows(engine, BillingCycle), rows(engine, User))
    second = await asyncio.to_thread(invoke, "quota", "reset-due")
    assert second.exit_code == 0, second.stderr
    assert second.stdout.startswith("0 user(s) reset")
    assert (rows(engine, BillingCycle), rows(engine, User)) == snapshot


async def test_missed_months_make_one_combined_archive(
    engine: Engine, make_user: UserFactory, settings: Settings
) -> None:
    start = dt.datetime(2026, 1, 10, 9, 30, tzinfo=dt.UTC)
    user_id, _ = await make_user(used_ms=777_000, cycle_start=start, cycle_end=next_month(start))
    now = dt.datetime(2026, 4, 20, tzinfo=dt.UTC)  # the cron missed February and March
    assert settings.database_url
    summary = await asyncio.to_thread(reset_in_own_engine, settings.effective_database_url, now)
    assert [a.user_id for a in summary.archives] == [user_id]
    [cycle] = rows(engine, BillingCycle)
    assert (cycle.cycle_start, cycle.cycle_end, cycle.used_ms) == (
        start,
        dt.datetime(2026, 4, 10, 9, 30, tzinfo=dt.UTC),
        777_000,
    )
    [user] = rows(engine, User)
    assert (user.cycle_start, user.cycle_end, user.used_ms) == (
        cycle.cycle_end,
        dt.datetime(2026, 5, 10, 9, 30, tzinfo=dt.UTC),
        0,
    )
    again = await asyncio.to_thread(reset_in_own_engine, settings.effective_database_url, now)
    assert again.archives == [] and len(rows(engine, BillingCycle)) == 1


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def test_reset_while_jobs_run_loses_no_usage(
    engine: Engine,
    make_user: UserFactory,
    run_job: JobRunner,
    emu: Emulator,
    settings: Settings,
) -> None:
    """Three jobs reserve before the reset and settle after it; three more race it."""
    user_id, key = await make_user("pro", streams_override=10, used_ms=42_000, **ended())
    emu.add_fault({"endpoint": "t2a_v2", "kind": "delay", "seconds": 1.0, "times": 3})
    slow = [
        asyncio.create_task(run_job(api_key=key, text=TEXT, voice="british-female"))
        for _ in range(3)
    ]
    # Reserved, and held inside MiniMax (the emulator counts a request on arrival).
    await until(lambda: emu.stats()["requests"]["t2a_v2"] >= 3, "three jobs at MiniMax")
    assert settings.database_url
    racing = [run_job(api_key=key, text=TEXT, voice="american-male") for _ in range(3)]
    # A ResetSummary then job outputs: mypy would call each of them `object`.
    results: list[Any] = await asyncio.gather(
        asyncio.to_thread(reset_in_own_engine, settings.effective_database_url), *racing
    )
    summary, *raced = results
    assert not any(t.done() for t in slow), "the reset should finish inside the delay"
    done = [*raced, *await asyncio.gather(*slow)]
    assert all("error" not in d for d in done), done
    # The first job to reserve rolls the ended cycle itself (cycles.py); the reset then
    # finds nothing due. Either way the cycle is archived exactly once.
    assert [a.user_id for a in summary.archives] in ([user_id], [])

    [cycle] = rows(engine, BillingCycle)
    [user] = rows(engine, User)
    charged = sum(u.duration_ms for u in rows(engine, Usage) if u.status == "succeeded")
    assert len([u for u in rows(engine, Usage) if u.status == "succeeded"]) == 6
    assert cycle.used_ms + user.used_ms == 42_000 + charged  # nothing lost, nothing twice
    slow_ms = sum(round(d["duration_seconds"] * 1000) for d in await asyncio.gather(*slow))
    assert user.used_ms >= slow_ms  # settled after the reset: counted in the new cycle


async def test_two_resets_at_once_archive_each_cycle_once(
    engine: Engine, make_user: UserFactory, settings: Settings
) -> None:
    for n in range(12):
        await make_user(used_ms=1000 * n, **ended(days_ago=1 + n))
    assert settings.database_url
    url = settings.effective_database_url
    first, second = await asyncio.gather(
        asyncio.to_thread(reset_in_own_engine, url), asyncio.to_thread(reset_in_own_engine, url)
    )
    reset_ids = sorted(a.user_id for a in [*first.archives, *second.archives])
    assert reset_ids == list(range(1, 13))
    cycles = rows(engine, BillingCycle)
    assert sorted(c.user_id for c in cycles) == list(range(1, 13))
    assert sorted(c.used_ms for c in cycles) == [1000 * n for n in range(12)]
    assert all(u.used_ms == 0 and u.cycle_end > utcnow() for u in rows(engine, User))


# --- scripts/reset_quotas.py -----------------------------------------------------------------


def script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/reset_quotas.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("backend", ["real"])  # a process costs ~1 s; cron runs on Postgres
async def test_the_cron_script_resets_and_exits_0(
    engine: Engine, make_user: UserFactory, settings: Settings
) -> None:
    await make_user(used_ms=9_000, **ended())
    proc = await asyncio.to_thread(script, cli_env(settings), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["users_reset"] == 1
    [cycle] = rows(engine, BillingCycle)
    assert cycle.used_ms == 9_000


def test_the_cron_script_exits_3_without_a_database() -> None:
    proc = script({"DATABASE_URL": UNREACHABLE})
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: database unavailable")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- an operator's command has a deadline ----------------------------------------------------


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_a_silent_database_ends_the_cron_by_its_deadline(
    invoke: Invoke, settings: Settings, pg_proxy: TcpProxy, make_user: UserFactory
) -> None:
    await make_user(**ended())
    pg_proxy.set("silence")  # accepted, never answered: no refusal to give up on
    env = {**cli_env(settings), "DATABASE_URL": pg_proxy.url, "ODEATTS_ADMIN_TIMEOUT_SECONDS": "1"}

    result = await asyncio.to_thread(invoke, "quota", "reset-due", "--json", env=env)

    assert result.exit_code == 3
    assert result.stderr.startswith("error: database unavailable: no answer within 1 s")
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_reset_due_gives_up_on_a_row_locked_by_another_session(
    invoke: Invoke, settings: Settings, engine: Engine, make_user: UserFactory
) -> None:
    user_id, _ = await make_user(used_ms=7_000, **ended())
    env = {**cli_env(settings), "ODEATTS_ADMIN_LOCK_TIMEOUT_SECONDS": "0.2"}
    with engine.connect() as holder:  # a session stuck while holding the user's row
        holder.execute(text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": user_id})
        try:  # (without a lock timeout the command would wait for the holder for ever)
            busy = await asyncio.wait_for(
                asyncio.to_thread(invoke, "quota", "reset-due", "--json", env=env), 30
            )
        finally:
            holder.rollback()
    assert busy.exit_code == 3, busy.stdout
    assert busy.stderr.startswith("error: database busy: rows this command needs stayed locked")
    assert rows(engine, BillingCycle) == []  # nothing half done

    again = await asyncio.to_thread(invoke, "quota", "reset-due", "--json", env=env)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["users_reset"] == 1


def image_ships(path: str) -> bool:
    """Whether a COPY line of the Dockerfile names ``path`` or a folder holding it."""
    copies = [
        line.split()[1:-1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    ]
    return any(
        source.rstrip("/") in (path, path.rsplit("/", 1)[0], ".")
        for sources in copies
        for source in sources
    )


def test_the_image_ships_the_cron_script() -> None:
    assert image_ships("scripts/admin.py")
    assert image_ships("scripts/reset_quotas.py")
