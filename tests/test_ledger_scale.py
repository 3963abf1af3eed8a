"""The ledger at scale (issue 14), as behaviour: the set-based reset does what the
one-by-one roll does, the grouped report adds up a hand-built ledger, and on Postgres
the operators' queries and the ``usage`` action are served by their indexes under a
generic plan. Timings are scripts/bench_ledger.py's, never asserted here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert, select

from odeatts import accounts, billing, metering
from odeatts.cycles import CycleArchive, roll_ended_cycle
from odeatts.db import Sessions, make_sessionmaker
from odeatts.models import ApiKey, BillingCycle, Plan, Usage, User
from odeatts.worker import Worker
from scripts.bench_ledger import build_ledger
from tests.conftest import PEPPER
from tests.support.cli import Invoke
from tests.support.plans import PlanLog, explaining

UTC = dt.UTC
NOW = dt.datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
PLANS = ("free", "basic", "pro", "enterprise")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- reset-due: set-based, the same result as one user at a time ------------------------------


def cycles_to_reset() -> list[dict[str, Any]]:
    """Users whose cycles ended at many different moments, one not due, missed months,
    a 31st clamped to shorter months, credits, overrides and every plan."""
    users: list[dict[str, Any]] = [
        {"cycle_start": at(2026, 3, 15), "cycle_end": at(2026, 4, 15), "credit_ms": 500},
        {"cycle_start": at(2026, 1, 31, 9), "cycle_end": at(2026, 2, 28, 9)},  # missed March
        {"cycle_start": at(2026, 4, 1), "cycle_end": at(2026, 5, 1)},  # not due
        {"cycle_start": at(2026, 3, 20, 12), "cycle_end": NOW},  # ends exactly now
    ]
    for k in range(1, 26):
        end = NOW - dt.timedelta(days=k, hours=k, minutes=7 * k)
        users.append({"cycle_start": end - dt.timedelta(days=30), "cycle_end": end})
    for n, fields in enumerate(users):
        fields.update(
            name=f"User {n}",
            email=f"user{n}@example.com",
            plan_id=PLANS[n % 4],
            active=True,
            used_ms=1_000 * n + 7,
            credit_ms=fields.get("credit_ms", -100 * (n % 3)),
            monthly_seconds_override=9_000 if n % 5 == 0 else None,
            created_at=at(2025, 1, 1),
        )
    return users


async def one_by_one(sessions: Sessions) -> tuple[list[CycleArchive], list[tuple[Any, ...]]]:
    """What rolling each user alone (a job's roll, cycles.roll_ended_cycle) would do:
    computed user by user, each rolled back."""
    archives, users = [], []
    async with sessions() as session:
        ids = (await session.execute(select(User.id).order_by(User.id))).scalars().all()
    for user_id in ids:
        async with sessions() as session:
            transaction = await session.begin()
            user, plan = (
                await session.execute(select(User, Plan).join(Plan).where(User.id == user_id))
            ).one()
            archive = await roll_ended_cycle(session, user, plan, now=NOW)
            if archive is not None:
                archives.append(archive)
            users.append(state_of(user))
            await transaction.rollback()
    return archives, users


def state_of(user: User) -> tuple[Any, ...]:
    return (user.id, user.used_ms, user.credit_ms, user.cycle_start, user.cycle_end)


async def ledger_state(sessions: Sessions) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with sessions() as session:
        users = (await session.execute(select(User).order_by(User.id))).scalars().all()
        cycles = (
            await session.execute(select(BillingCycle).order_by(BillingCycle.user_id))
        ).scalars()
        archived = [
            (c.user_id, c.plan_id, c.cycle_start, c.cycle_end, c.quota_ms, c.used_ms, c.credit_ms)
            for c in cycles
        ]
    return [state_of(u) for u in users], archived


def archived_as(archive: CycleArchive) -> tuple[Any, ...]:
    a = archive
    return (a.user_id, a.plan_id, a.cycle_start, a.cycle_end, a.quota_ms, a.used_ms, a.credit_ms)


async def test_set_based_reset_equals_one_by_one_and_is_idempotent(worker: Worker) -> None:
    sessions = worker.pipeline().sessions
    async with sessions() as session, session.begin():
        for fields in cycles_to_reset():
            session.add(User(**fields))
    async with sessions() as session, session.begin():  # a hand edit: already archived
        hand = (await session.execute(select(User).where(User.id == 6))).scalar_one()
        session.add(
            BillingCycle(
                user_id=6,
                plan_id="free",
                cycle_start=hand.cycle_start,
                cycle_end=hand.cycle_end,
                quota_ms=1,
                used_ms=1,
                credit_ms=0,
                closed_at=NOW,
            )
        )
    expected, expected_users = await one_by_one(sessions)
    assert len(expected) == 27  # 29 users: one not due, one already archived
    _, hand_archive = await ledger_state(sessions)

    first = await billing.reset_due(sessions, now=NOW, batch_size=4)  # several batches
    assert (first.due, first.archives) == (28, expected)
    users, cycles = await ledger_state(sessions)
    assert users == expected_users
    assert cycles == sorted([*hand_archive, *map(archived_as, expected)])

    second = await billing.reset_due(sessions, now=NOW, batch_size=4)
    assert (second.due, second.archives) == (1, [])  # the hand-edited user, left alone
    assert await ledger_state(sessions) == (users, cycles)


async def test_a_batch_of_one_and_a_batch_of_all_agree(worker: Worker) -> None:
    sessions = worker.pipeline().sessions
    async with sessions() as session, session.begin():
        for fields in cycles_to_reset()[:8]:
            session.add(User(**fields))
    expected, expected_users = await one_by_one(sessions)
    summary = await billing.reset_due(sessions, now=NOW, batch_size=1)
    assert summary.archives == expected
    assert (await ledger_state(sessions))[0] == expected_users


# --- the report: one grouped query adds up a hand-built ledger ------------------------------

START, END = at(2026, 3, 1), at(2026, 4, 1)

# user, status, model, created_at, duration_ms, billed_characters
ROWS = [
    (1, "succeeded", "speech-02-hd", at(2026, 3, 1), 1_500, 40),  # the first instant counts
    (1, "succeeded", "speech-02-turbo", at(2026, 3, 9, 5), 2_250, 70),
    (1, "failed", "speech-02-turbo", at(2026, 3, 9, 6), None, None),
    (1, "refused", "speech-02-hd", at(2026, 3, 31, 23, 59), None, None),
    (1, "succeeded", "speech-02-hd", at(2026, 4, 1), 9_999, 999),  # the end is excluded
    (2, "succeeded", "speech-2.6-hd", at(2026, 3, 15), 4_000, 120),
    (2, "succeeded", "speech-02-turbo", at(2026, 2, 28), 8_000, 200),  # last month
    (2, "reserved", "speech-02-turbo", at(2026, 3, 20), None, None),
    (3, "succeeded", "speech-02-turbo", at(2026, 2, 1), 1_000, 10),  # nothing this month
]
PRICES = billing.Prices(turbo_per_million=60.0, hd_per_million=100.0)


def expected_lines() -> dict[int, dict[str, Any]]:
    lines: dict[int, dict[str, Any]] = {}
    for user, status, model, created, duration, chars in ROWS:
        if not START <= created < END:
            continue
        line = lines.setdefault(
            user,
            {"requests": 0, "succeeded": 0, "failed": 0, "refused": 0, "ms": 0, "chars": 0},
        )
        line["requests"] += 1
        if status in ("succeeded", "failed", "refused"):
            line[status] += 1
        line["ms"] += duration or 0
        line["chars"] += chars or 0
        price = PRICES.hd_per_million if "-hd" in model else PRICES.turbo_per_million
        line["cost"] = line.get("cost", 0) + (chars or 0) * price / 1_000_000
    return lines


async def test_the_grouped_report_adds_up_a_hand_built_ledger(
    worker: Worker, invoke: Invoke
) -> None:
    sessions = worker.pipeline().sessions
    async with sessions() as session, session.begin():
        for n in range(1, 5):
            session.add(
                User(
                    name=f"User {n}",
                    email=f"user{n}@example.com",
                    plan_id=PLANS[n % 4],
                    active=True,
                    used_ms=0,
                    cycle_start=START,
                    cycle_end=END,
                )
            )
        await session.flush()
        for n in range(1, 5):
            session.add(ApiKey(id=n, user_id=n, prefix=f"odea_{n:08d}", key_hash=f"hash-{n}"))
        await session.flush()
        await session.execute(
            insert(Usage),
            [
                {
                    "job_id": f"job-{n}",
                    "user_id": user,
                    "api_key_id": user,
                    "voice": "british-male",
                    "model": model,
                    "text_chars": 10,
                    "estimated_ms": 1_000,
                    "status": status,
                    "duration_ms": duration,
                    "billed_characters": chars,
                    "attempts": 1,
                    "created_at": created,
                    "reserved_at": created,
                }
                for n, (user, status, model, created, duration, chars) in enumerate(ROWS)
            ],
        )

    report = await billing.usage_report(sessions, start=START, end=END, prices=PRICES)
    expected = expected_lines()
    assert [line.user_id for line in report.lines] == sorted(expected) == [1, 2]
    for line in report.lines:
        want = expected[line.user_id]
        got = (line.requests, line.succeeded, line.failed, line.refused)
        assert got == (want["requests"], want["succeeded"], want["failed"], want["refused"])
        assert (line.duration_ms, line.billed_characters) == (want["ms"], want["chars"])
        assert line.cost_usd == round(want["cost"], 6)
        assert line.email == f"user{line.user_id}@example.com"
    assert report.totals()["requests"] == 6 and report.totals()["seconds"] == 7.75

    alone = await billing.usage_report(sessions, start=START, end=END, prices=PRICES, user="3")
    assert [(x.user_id, x.requests, x.cost_usd) for x in alone.lines] == [(3, 0, 0.0)]

    nothing = await asyncio.to_thread(
        invoke, "usage", "report", "--json", "--from", "2000-01-01", "--to", "2000-02-01"
    )
    assert nothing.exit_code == 0, nothing.stderr
    data = json.loads(nothing.stdout)
    assert data["users"] == [] and data["totals"]["users"] == 0
    assert nothing.stdout == json.dumps(data, indent=2) + "\n"


# --- Postgres: the indexes that serve each query, whatever the plan -------------------------

real_only = pytest.mark.parametrize("backend", ["real"], indirect=True)


def shape(plans: PlanLog, table: str) -> list[str]:
    """The plan nodes of the statements naming ``table``, without costs or conditions:
    ``Index Scan Backward using ix_... on usage``."""
    node = re.compile(r"^\s*(?:->\s*)?(\S.*?)\s+\(cost=")
    nodes = []
    for plan in plans.touching(table):
        for line in plan.plan.splitlines():
            found = node.match(line)
            if found:
                nodes.append(found[1])
    return nodes


async def ledger_plans(url: str, work: Any, *, generic: bool) -> PlanLog:
    engine, plans = explaining(url, generic=generic)
    try:
        sessions = make_sessionmaker(engine)
        await work(sessions)  # connects and loads auto_explain
        plans.clear()
        await work(sessions)
    finally:
        await engine.dispose()
    return plans


@real_only
async def test_the_usage_action_and_operator_queries_use_their_indexes_under_any_plan(
    database_url: str,
) -> None:
    now = dt.datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        ledger = build_ledger(conn, users=300, rows=30_000, pepper=PEPPER.encode(), now=now)
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)

    async def recent_big(sessions: Sessions) -> Any:
        async with sessions() as session:
            return await metering.recent_usage(session, user_id=ledger.big_user, limit=10)

    async def recent_idle(sessions: Sessions) -> Any:
        async with sessions() as session:
            return await metering.recent_usage(session, user_id=ledger.idle_user, limit=100)

    async def keys(sessions: Sessions) -> Any:
        return await accounts.list_keys(sessions, user=str(ledger.big_user))

    async def abandon(sessions: Sessions) -> Any:
        return await metering.abandon_stale(sessions, now=now, stale_after=dt.timedelta(minutes=5))

    serving = {
        recent_big: "ix_usage_api_key_created",
        recent_idle: "ix_usage_api_key_created",
        keys: "ix_usage_api_key_created",
        abandon: "ix_usage_reserved",
    }
    for work, index in serving.items():
        custom = shape(await ledger_plans(url, work, generic=False), "usage")
        generic = shape(await ledger_plans(url, work, generic=True), "usage")
        name = work.__name__
        assert generic == custom, (name, custom, generic)
        # The index behind every scan of usage (a bitmap heap scan names none itself).
        scans = [n for n in generic if "Scan" in n and "api_keys" not in n and "Heap" not in n]
        assert scans and all(index in node for node in scans), (name, generic)
        assert not any(node.startswith("Seq Scan") for node in generic), (name, generic)
        if work in (recent_big, keys):  # the big customer's keys: newest first, never all
            assert all("Scan Backward" in node for node in scans), (name, generic)

    async def report(sessions: Sessions) -> Any:
        start = now - dt.timedelta(days=30)
        return await billing.usage_report(sessions, start=start, end=now, prices=PRICES)

    plans = await ledger_plans(url, report, generic=True)
    assert len(plans.touching("usage")) == 1, "one grouped query for the period"


@real_only
async def test_recent_rows_merged_from_each_key_are_the_users_newest(
    database_url: str, worker: Worker
) -> None:
    now = dt.datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        ledger = build_ledger(conn, users=30, rows=3_000, pepper=PEPPER.encode(), now=now)
        # Ties across the big customer's keys at its newest instant.
        conn.execute(
            "UPDATE usage SET created_at = %s WHERE id IN "
            "(SELECT id FROM usage WHERE user_id = 1 ORDER BY created_at DESC LIMIT 7)",
            (now,),
        )
    sessions = worker.pipeline().sessions
    for user in (ledger.big_user, ledger.idle_user, 2):
        for limit in (1, 5, 10, 100):
            async with sessions() as session:
                merged = await metering.recent_usage(session, user_id=user, limit=limit)
                plain = metering.recent_usage_query("sqlite", user_id=user, limit=limit)
                simple = (await session.execute(plain)).scalars().all()
            assert [u.id for u in merged] == [u.id for u in simple], (user, limit)
