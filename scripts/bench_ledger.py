#!/usr/bin/env python3
"""How the ledger behaves at scale (issue 14). Builds a ledger in its own Postgres
database with ``generate_series``, times the speech path and the operators' queries on
it, prints a table, and drops the database (``--keep`` keeps it). Prints figures only.

    .venv/bin/python scripts/bench_ledger.py --rows 1000000 --users 10000

The ledger: ``--users`` users on the four plans (user 1, the big customer, on
enterprise with three keys, one revoked), one key each; ``--rows`` usage rows over the
last 90 days (90% succeeded, 5% failed, 5% refused; a quarter on hd models); the big
customer holds 10% of the rows; the last user has no row in the last 30 days; a few
live reservations and a few hundred stale ones (dead workers). Then:

speech path       reserve + settle of the big customer through the real metering
                  functions (median and p95 over ``--jobs`` jobs)
usage action      the ``usage`` action through a real Worker (median wall time), the
                  big customer and the idle one, with the plans Postgres chooses
                  (custom) and with every connection forced to generic plans
                  (``ALTER DATABASE ... SET plan_cache_mode``, what a worker's
                  connection may settle on after five executions of a statement)
usage report      ``scripts/admin.py usage report`` over the last 30 days as CSV to a
                  file, in its own process: wall time and peak memory (max RSS)
users show,       for the big customer, custom and generic plans: SQL time as
keys list         Postgres reports it (auto_explain) and wall time
abandon_stale     the hourly close of dead workers' reservations, custom and generic
reset-due         ``quota reset-due`` with every user due (their cycles end an hour ago)

Needs Postgres as a superuser (``TEST_DATABASE_URL``, default as in the tests; the
benchmark creates and drops its database and loads auto_explain). The machine is
shared: the figures are for comparing runs on the same machine, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odeatts import accounts, billing, metering
from odeatts.config import Settings
from odeatts.db import Sessions, make_engine, make_sessionmaker
from odeatts.keys import NewKey, generate_key, hash_key
from odeatts.migrate import upgrade
from odeatts.models import utcnow
from odeatts.outbox import Charge
from odeatts.worker import Worker
from tests.support.plans import PlanLog, explaining, explaining_everywhere
from tests.support.services import PG_URL

__all__ = ["Ledger", "build_ledger"]

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
PEPPER = "bench-ledger-pepper-0123456789abcdef0123456789"
TTL = dt.timedelta(seconds=330)
CHUNK = 1_000_000  # usage rows per INSERT ... SELECT generate_series

USERS_SQL = """
INSERT INTO users (id, name, email, plan_id, active, used_ms, credit_ms,
                   monthly_seconds_override, cycle_start, cycle_end, created_at)
SELECT g, 'User ' || g, 'user' || g || '@bench.example',
       CASE WHEN g = 1 THEN 'enterprise' WHEN g %% 10 = 0 THEN 'pro'
            WHEN g %% 3 = 0 THEN 'basic' ELSE 'free' END,
       true, (g * 7919) %% 600000, 0,
       CASE WHEN g = 1 THEN 1000000000 END,
       c.start, (c.start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
       %(now)s - interval '120 days'
  FROM generate_series(1, %(users)s::int) g
 CROSS JOIN LATERAL (
       SELECT %(now)s - interval '10 days' - (g %% 17) * interval '1 day' AS start) c
"""

KEYS_SQL = """
INSERT INTO api_keys (id, user_id, prefix, key_hash, label, created_at, revoked_at)
SELECT g, CASE WHEN g > %(users)s::int THEN 1 ELSE g END,
       'odea_' || lpad(to_hex(g), 8, '0'),
       encode(sha256(convert_to('bench-key-' || g, 'UTF8')), 'hex'),
       CASE WHEN g > %(users)s::int THEN 'extra key' ELSE 'first key' END,
       %(now)s - interval '120 days',
       CASE WHEN g = %(users)s::int + 2 THEN %(now)s - interval '5 days' END
  FROM generate_series(1, %(users)s::int + 2) g
"""

# Row g: the big customer (user 1, over its three keys) holds every tenth row; the
# others are spread over users 2..N; created over the last 90 days in id order, as a
# real ledger grows (rows are appended as jobs arrive, so a month's rows lie together
# in the table); 90% succeeded, 5% failed, 5% refused.
USAGE_SQL = """
INSERT INTO usage (id, job_id, user_id, api_key_id, voice, model, text_chars, estimated_ms,
                   duration_ms, billed_characters, status, error_code, attempts,
                   created_at, reserved_at, settled_at)
SELECT g, 'bench-' || g, s.uid,
       CASE WHEN s.uid = 1 THEN (ARRAY[1, %(users)s::int + 1, %(users)s::int + 2])[1 + g %% 3]
            ELSE s.uid END,
       'british-female',
       CASE WHEN g %% 4 = 1 THEN 'speech-02-hd' ELSE 'speech-02-turbo' END,
       s.chars, s.chars * 60,
       CASE WHEN s.status = 'succeeded' THEN s.chars * 55 END,
       CASE WHEN s.status = 'succeeded' THEN s.chars END,
       s.status,
       CASE s.status WHEN 'refused' THEN 'quota_exceeded'
                     WHEN 'failed' THEN CASE WHEN g %% 7 = 0 THEN 'abandoned'
                                             ELSE 'upstream_unavailable' END END,
       1, s.at, s.at, s.at + interval '3 seconds'
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
 CROSS JOIN LATERAL (
       SELECT CASE WHEN g %% 10 = 0 THEN 1 ELSE 2 + (g * 7919) %% (%(users)s::int - 1) END AS uid,
              20 + (g * 31) %% 480 AS chars,
              %(now)s - (7776000 - (g * 7776000) / %(rows)s::bigint) * interval '1 second' AS at,
              CASE WHEN (g / 10) %% 20 = 0 THEN 'failed'
                   WHEN (g / 10) %% 20 = 1 THEN 'refused'
                   ELSE 'succeeded' END AS status) s
"""

# Reservations in flight: ``live`` made a minute ago, ``stale`` an hour ago (their
# workers died); spread over users 2..N.
RESERVED_SQL = """
INSERT INTO usage (id, job_id, user_id, api_key_id, voice, model, text_chars, estimated_ms,
                   status, attempts, created_at, reserved_at)
SELECT %(rows)s::bigint + g, 'bench-reserved-' || g, s.uid, s.uid, 'british-female',
       'speech-02-turbo', 100, 6000, 'reserved', 1, s.at, s.at
  FROM generate_series(1, %(live)s::int + %(stale)s::int) g
 CROSS JOIN LATERAL (
       SELECT 2 + (g * 7919) %% (%(users)s::int - 1) AS uid,
              CASE WHEN g <= %(live)s::int THEN %(now)s - interval '1 minute'
                   ELSE %(now)s - interval '1 hour' END AS at) s
"""

IDLE_SQL = """
UPDATE usage SET created_at = created_at - interval '45 days',
                 reserved_at = reserved_at - interval '45 days',
                 settled_at = settled_at - interval '45 days'
 WHERE user_id = %(users)s::int AND created_at > %(now)s - interval '30 days'
"""


@dataclass(frozen=True, slots=True)
class Ledger:
    users: int
    rows: int
    big_user: int  # holds 10% of the rows, on three keys
    idle_user: int  # no row in the last 30 days
    keys: dict[int, NewKey]  # a usable key of the big and of the idle customer
    now: dt.datetime


def build_ledger(
    conn: psycopg.Connection[Any],
    *,
    users: int,
    rows: int,
    pepper: bytes,
    now: dt.datetime,
    live: int = 20,
    stale: int = 200,
    progress: Callable[[str], None] = lambda _: None,
) -> Ledger:
    """Fill an empty, migrated database (``conn`` in autocommit)."""
    assert users >= 3 and rows >= 10
    conn.execute("SET synchronous_commit = off")
    params: dict[str, Any] = {"users": users, "rows": rows, "now": now}
    conn.execute(USERS_SQL, params)
    conn.execute(KEYS_SQL, params)
    for first in range(1, rows + 1, CHUNK):
        last = min(first + CHUNK - 1, rows)
        conn.execute(USAGE_SQL, {**params, "first": first, "last": last})
        progress(f"{last:,} of {rows:,} usage rows")
    conn.execute(RESERVED_SQL, {**params, "live": live, "stale": stale})
    conn.execute(IDLE_SQL, params)
    keys = {user: generate_key(pepper) for user in (1, users)}  # key id = user id
    for user, key in keys.items():
        conn.execute(
            "UPDATE api_keys SET prefix = %s, key_hash = %s WHERE id = %s",
            (key.prefix, key.hash, user),
        )
    for table in ("users", "api_keys", "usage"):
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    progress("vacuum analyze")
    conn.execute("VACUUM ANALYZE users, api_keys, usage")
    return Ledger(users, rows, big_user=1, idle_user=users, keys=keys, now=now)


# --- timing ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


async def timed(call: Callable[[], Awaitable[T]], repeat: int) -> tuple[float, T]:
    """The median wall time of ``repeat`` calls after one warm-up call."""
    result = await call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


async def speech_path(url: str, ledger: Ledger, jobs: int) -> tuple[list[float], list[float]]:
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    key_hash = hash_key(ledger.keys[ledger.big_user].plain, PEPPER.encode())
    reserves, settles = [], []
    try:
        for n in range(jobs + 1):
            job = metering.JobMeta(
                f"bench-speech-{uuid.uuid4()}", "british-female", "speech-02-turbo", 40, 3000
            )
            started = time.perf_counter()
            done = await metering.reserve(
                sessions, key_hash=key_hash, job=job, now=utcnow(), stale_after=TTL
            )
            reserved = time.perf_counter()
            charge = Charge(
                job.job_id,
                done.usage_id,
                done.attempt,
                done.caller.user_id,
                2900,
                40,
                None,
                utcnow().isoformat(),
            )
            await metering.settle(sessions, charge, caller=done.caller)
            if n:  # the first job warms the pool and the prepared statements
                reserves.append(reserved - started)
                settles.append(time.perf_counter() - reserved)
    finally:
        await engine.dispose()
    return reserves, settles


def worker_settings(url: str) -> Settings:
    return Settings(
        ODEATTS_ENV="test",
        DATABASE_URL=url,
        ODEATTS_KEY_PEPPER=PEPPER,
        MINIMAX_API_KEY="unused",
        MINIMAX_BASE_URL="http://127.0.0.1:9",
        ODEATTS_DATA_DIR=tempfile.gettempdir(),
    )


async def usage_action(
    url: str, ledger: Ledger, user: int, repeat: int, *, generic: bool
) -> tuple[float, float]:
    """The ``usage`` action of ``user`` through a real Worker: median wall and SQL time."""
    job_input = {"api_key": ledger.keys[user].plain, "action": "usage", "limit": 10}
    with explaining_everywhere(generic=generic) as plans:
        worker = Worker(worker_settings(url))

        async def call() -> float:
            plans.clear()
            result = await worker.handle({"id": f"bench-{uuid.uuid4()}", "input": job_input})
            assert "error" not in result, result
            return sql_seconds(plans)

        try:
            wall, _ = await timed(call, repeat)
            sqls = [await call() for _ in range(repeat)]
        finally:
            await worker.aclose()
    return wall, statistics.median(sqls)


async def explained(
    url: str, generic: bool, work: Callable[[Sessions], Awaitable[Any]], repeat: int
) -> tuple[float, float]:
    """Median wall time and median SQL time (auto_explain's durations) of ``work``."""
    engine, plans = explaining(url, generic=generic)
    sessions = make_sessionmaker(engine)
    walls, sqls = [], []
    try:
        await work(sessions)  # warm-up: connect, load auto_explain
        for _ in range(repeat):
            plans.clear()
            start = time.perf_counter()
            await work(sessions)
            walls.append(time.perf_counter() - start)
            sqls.append(sql_seconds(plans))
    finally:
        await engine.dispose()
    return statistics.median(walls), statistics.median(sqls)


def sql_seconds(plans: PlanLog) -> float:
    return plans.sql_ms() / 1000


def usage_report(url: str, *args: str) -> tuple[float, int, int]:
    """``usage report ARGS --format csv`` to a file, in its own process: wall time,
    max RSS (kB), lines written."""
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "report.csv"
        env = {**os.environ, "DATABASE_URL": url, "ODEATTS_KEY_PEPPER": PEPPER}
        command = [sys.executable, str(ROOT / "scripts" / "admin.py"), "usage", "report"]
        command += [*args, "--format", "csv", "--output", str(target)]
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        stderr = proc.stderr.read() if proc.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"usage report failed: {stderr}")
        lines = sum(1 for _ in target.open()) - 1
    return elapsed, usage.ru_maxrss, lines


async def reset_all(url: str, ledger: Ledger) -> tuple[float, int]:
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET cycle_start = %(end)s - interval '1 month', cycle_end = %(end)s",
            {"end": utcnow() - dt.timedelta(hours=1)},
        )
        conn.execute("VACUUM ANALYZE users")
    engine = make_engine(url, pool_size=2)
    try:
        started = time.perf_counter()
        summary = await billing.reset_due(make_sessionmaker(engine), stale_after=TTL)
        elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    return elapsed, len(summary.archives)


def plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def with_db(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + name).geturl()


# --- the run ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="usage rows (default 1M)")
    p.add_argument("--users", type=int, default=10_000, help="users (default 10,000)")
    p.add_argument("--jobs", type=int, default=200, help="speech jobs to time")
    p.add_argument("--repeat", type=int, default=7, help="timed calls per query")
    p.add_argument("--database", default="bench_ledger", help="created, then dropped")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--no-reset", action="store_true", help="skip reset-due (it is slow before")
    return p.parse_args()


def say(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


Figures = list[tuple[str, str]]


async def measure_speech(url: str, ledger: Ledger, args: argparse.Namespace) -> Figures:
    say("speech path")
    reserves, settles = await speech_path(url, ledger, args.jobs)
    p95 = statistics.quantiles([r + s for r, s in zip(reserves, settles, strict=True)], n=20)[-1]
    label = "speech path: reserve / settle (median), reserve+settle p95"
    median = f"{ms(statistics.median(reserves))} / {ms(statistics.median(settles))}"
    return [(label, f"{median}, {ms(p95)}")]


async def measure_usage_action(url: str, ledger: Ledger, args: argparse.Namespace) -> Figures:
    rows = []
    for generic in (False, True):
        plan = "generic" if generic else "custom"
        say(f"usage action ({plan} plans)")
        figures = []
        for user in (ledger.big_user, ledger.idle_user):
            wall, sql = await usage_action(url, ledger, user, args.repeat, generic=generic)
            figures.append(f"{ms(sql)} SQL ({ms(wall)} wall)")
        label = f"`usage` action, big customer / idle customer ({plan} plans)"
        rows.append((label, " / ".join(figures)))
    return rows


def measure_report(url: str) -> Figures:
    say("usage report")
    # The command's own start (Python, imports, connecting): a report of nothing.
    nothing = ("--user", "2", "--from", "2000-01-01", "--to", "2000-01-02")
    start_up, start_rss, _ = usage_report(url, *nothing)
    today = utcnow().date()
    month = ("--from", (today - dt.timedelta(days=30)).isoformat(), "--to", today.isoformat())
    elapsed, rss, lines = usage_report(url, *month)
    label = f"`usage report`, last 30 days ({lines:,} users), CSV to a file, own process"
    value = (
        f"{ms(elapsed - start_up)} beyond start-up ({ms(elapsed)} in all), "
        f"max RSS {rss // 1024} MB (start-up alone {start_rss // 1024} MB)"
    )
    return [(label, value)]


async def measure_operators(url: str, ledger: Ledger, args: argparse.Namespace) -> Figures:
    user = str(ledger.big_user)

    async def show(sessions: Sessions) -> Any:
        return await accounts.show_user(sessions, user=user, lease_ttl=TTL)

    async def keys(sessions: Sessions) -> Any:
        return await accounts.list_keys(sessions, user=user)

    async def abandon(sessions: Sessions) -> Any:
        return await metering.abandon_stale(sessions, now=utcnow(), stale_after=TTL)

    named = (
        ("`users show`, big customer", show),
        ("`keys list`, big customer", keys),
        ("abandon_stale (hourly)", abandon),
    )
    rows = []
    for name, work in named:
        figures = []
        for generic in (False, True):
            say(f"{name} ({'generic' if generic else 'custom'})")
            wall, sql = await explained(url, generic, work, args.repeat)
            figures.append(f"{ms(sql)} SQL ({ms(wall)} wall)")
        rows.append((f"{name}: custom / generic plans", " / ".join(figures)))
    return rows


async def measure(url: str, ledger: Ledger, args: argparse.Namespace) -> Figures:
    rows = await measure_speech(url, ledger, args)
    rows += await measure_usage_action(url, ledger, args)
    rows += measure_report(url)
    rows += await measure_operators(url, ledger, args)
    if not args.no_reset:
        say("reset-due, every user due")
        elapsed, reset = await reset_all(url, ledger)
        rows.append((f"`quota reset-due`, {reset:,} users due", ms(elapsed)))
    return rows


def main() -> None:
    args = parse_args()
    admin = psycopg.connect(PG_URL, autocommit=True)
    name = args.database
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    url = with_db(PG_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        upgrade(url)
        started = time.perf_counter()
        with psycopg.connect(with_db(PG_URL, name), autocommit=True) as conn:
            ledger = build_ledger(
                conn,
                users=args.users,
                rows=args.rows,
                pepper=PEPPER.encode(),
                now=utcnow(),
                progress=say,
            )
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('usage'))")
            table_size = str((size.fetchone() or ["?"])[0])
        say(f"built in {time.perf_counter() - started:.0f} s; usage is {table_size}")
        figures = asyncio.run(measure(url, ledger, args))
    finally:
        if not args.keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    print(f"\n{args.rows:,} usage rows, {args.users:,} users (usage table {table_size})\n")
    print("| figure | value |\n|---|---|")
    for label, value in figures:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
