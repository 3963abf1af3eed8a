"""``admin.py quota show | adjust | reset`` as an operator meets them, on both backends.

A credit is proved by a speech job: a user refused ``quota_exceeded`` is admitted after
``quota adjust``; the audit row is written in the same transaction as the credit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Row, Table, select, update
from typer.testing import CliRunner, Result

from odeatts.accounts import next_month
from odeatts.cli import app
from odeatts.models import BillingCycle, QuotaAdjustment, User, utcnow
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory
from tests.support.cli import Invoke
from tests.support.ledger import add_reservation
from tests.test_admin_cli import UNREACHABLE, assert_operator_error

TEXT = "Good evening, Abuja. The last bus leaves at ten."
FREE_MS = 600_000


def user_row(engine: Engine, user_id: int) -> Row[Any]:
    with engine.connect() as conn:
        return conn.execute(select(User.__table__).where(User.id == user_id)).one()


def adjustments(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(select(QuotaAdjustment.__table__)).all())


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


# --- quota show ----------------------------------------------------------------------------


async def test_show_reports_what_a_job_would_see(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner, worker: Worker
) -> None:
    user_id, key = await make_user("basic", monthly_seconds_override=1200, credit_ms=30_000)
    done = await run_job(api_key=key, text=TEXT, voice="british-female")
    assert "error" not in done, done
    now = utcnow()
    sessions = worker.pipeline().sessions
    await add_reservation(sessions, user_id, "live", 5_000, reserved_at=now)
    lapsed = now - dt.timedelta(hours=1)
    await add_reservation(sessions, user_id, "dead", 7_000, reserved_at=lapsed)

    data = as_json(
        await asyncio.to_thread(invoke, "quota", "show", "--user", "USER0@EXAMPLE.COM", "--json")
    )
    used = done["quota"]["used_seconds"]
    assert data["user"] == {"id": user_id, "email": "user0@example.com", "plan": "basic"}
    assert data["plan_seconds"] == 3600 and data["override_seconds"] == 1200
    assert data["credit_seconds"] == 30 and data["quota_seconds"] == 1230
    assert data["used_seconds"] == used and data["reserved_seconds"] == 5
    assert data["remaining_seconds"] == pytest.approx(1230 - used - 5)
    row = user_row(engine, user_id)
    assert data["cycle"] == {"start": row.cycle_start.isoformat(), "end": row.cycle_end.isoformat()}

    by_id = await asyncio.to_thread(invoke, "quota", "show", "--user", str(user_id))
    assert by_id.exit_code == 0, by_id.stderr
    assert "user0@example.com" in by_id.stdout and "remaining_seconds" in by_id.stdout


# --- quota adjust --------------------------------------------------------------------------


async def test_a_credit_admits_a_refused_user(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    user_id, key = await make_user(used_ms=FREE_MS)
    refused = await run_job(api_key=key, text=TEXT, voice="british-female")
    assert refused["error"]["code"] == "quota_exceeded"

    data = as_json(
        await asyncio.to_thread(
            invoke,
            "quota",
            "adjust",
            "--user",
            "user0@example.com",
            "--seconds",
            "+60",
            "--reason",
            "goodwill: outage on 3 March",
            "--actor",
            "ops-ada",
            "--json",
        )
    )
    assert data["adjustment"]["seconds"] == 60 and data["adjustment"]["actor"] == "ops-ada"
    assert data["quota"]["credit_seconds"] == 60 and data["quota"]["remaining_seconds"] == 60

    admitted = await run_job(api_key=key, text=TEXT, voice="british-female")
    assert "error" not in admitted, admitted
    assert 0 < admitted["quota"]["remaining_seconds"] < 60
    [audit] = adjustments(engine)
    assert (audit.user_id, audit.delta_ms, audit.actor) == (user_id, 60_000, "ops-ada")
    assert audit.reason == "goodwill: outage on 3 March"
    assert user_row(engine, user_id).credit_ms == 60_000


async def test_a_deduction_defaults_the_actor_and_cannot_exceed_the_quota(
    invoke: Invoke, engine: Engine, make_user: UserFactory
) -> None:
    user_id, _ = await make_user()
    data = as_json(
        await asyncio.to_thread(
            invoke,
            "quota",
            "adjust",
            "--user",
            str(user_id),
            "--seconds",
            "-100.5",
            "--reason",
            "chargeback",
            "--json",
        )
    )
    assert data["quota"]["credit_seconds"] == -100.5
    assert data["quota"]["remaining_seconds"] == 499.5
    [audit] = adjustments(engine)
    assert audit.delta_ms == -100_500 and audit.actor == getpass.getuser()
    again = await asyncio.to_thread(
        invoke,
        "quota",
        "adjust",
        "--user",
        str(user_id),
        "--seconds=-20",
        "--reason",
        "second",
        "--json",
    )
    assert as_json(again)["quota"]["credit_seconds"] == -120.5

    too_much = await asyncio.to_thread(
        invoke,
        "quota",
        "adjust",
        "--user",
        str(user_id),
        "--seconds",
        "-480",
        "--reason",
        "too much",
    )
    assert_operator_error(too_much, 2, "cannot take back", "479.5")
    assert len(adjustments(engine)) == 2 and user_row(engine, user_id).credit_ms == -120_500


MISTAKES: list[tuple[list[str], list[str]]] = [
    (["show", "--user", "nobody@example.com"], ["no user", "nobody@example.com"]),
    (["show", "--user", "99999"], ["no user", "99999"]),
    (["show"], ["--user", "required"]),
    (["adjust", "--user", "nobody@example.com", "--seconds", "10", "--reason", "x"], ["no user"]),
    (["adjust", "--user", "1", "--seconds", "0", "--reason", "x"], ["zero"]),
    (["adjust", "--user", "1", "--seconds", "0.0001", "--reason", "x"], ["zero"]),
    (["adjust", "--user", "1", "--seconds", "ten", "--reason", "x"], ["number"]),
    (["adjust", "--user", "1", "--seconds", "nan", "--reason", "x"], ["between"]),
    (["adjust", "--user", "1", "--seconds", "1e12", "--reason", "x"], ["between"]),
    (["adjust", "--user", "1", "--reason", "x"], ["--seconds", "required"]),
    (["adjust", "--user", "1", "--seconds", "10"], ["--reason", "required"]),
    (["adjust", "--user", "1", "--seconds", "10", "--reason", "   "], ["--reason"]),
    (
        ["adjust", "--user", "1", "--seconds", "10", "--reason", "x", "--actor", "a" * 101],
        ["--actor", "100"],
    ),
    (["reset", "--user", "ghost@example.com"], ["no user"]),
    (["reset"], ["--user", "required"]),
]


async def test_operator_mistakes_are_one_line_and_change_nothing(
    invoke: Invoke, engine: Engine, make_user: UserFactory
) -> None:
    """One database for all the cases: a fresh Postgres copy per case costs ~0.5 s."""
    user_id, _ = await make_user()
    assert user_id == 1
    before = user_row(engine, user_id)
    for args, words in MISTAKES:
        result = await asyncio.to_thread(invoke, "quota", *args)
        try:
            assert_operator_error(result, 2, *words)
        except AssertionError as exc:
            raise AssertionError(f"quota {' '.join(args)}: {exc}") from exc
    assert adjustments(engine) == []
    assert user_row(engine, user_id) == before

    with engine.begin() as conn:  # a cycle that has not begun has nothing to close
        conn.execute(
            update(cast(Table, User.__table__))
            .where(User.id == user_id)
            .values(cycle_start=utcnow() + dt.timedelta(days=1))
        )
    result = await asyncio.to_thread(invoke, "quota", "reset", "--user", str(user_id))
    assert_operator_error(result, 2, "nothing to close")
    with engine.connect() as conn:
        assert conn.execute(select(BillingCycle.__table__)).all() == []


def test_unreachable_database_exits_3() -> None:
    for args in (
        ["show", "--user", "1"],
        ["reset-due"],
        ["adjust", "--user", "1", "--seconds", "5", "--reason", "x"],
    ):
        result = CliRunner().invoke(app, ["quota", *args], env={"DATABASE_URL": UNREACHABLE})
        assert_operator_error(result, 3, "database unavailable")


# --- quota reset ---------------------------------------------------------------------------


async def test_reset_archives_the_cycle_and_starts_one_now(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    start = utcnow() - dt.timedelta(days=10)
    user_id, key = await make_user(
        "basic", cycle_start=start, cycle_end=next_month(start), used_ms=90_000, credit_ms=15_000
    )
    before = utcnow()
    data = as_json(
        await asyncio.to_thread(invoke, "quota", "reset", "--user", str(user_id), "--json")
    )
    after = utcnow()
    row = user_row(engine, user_id)
    assert (row.used_ms, row.credit_ms) == (0, 0)
    assert before <= row.cycle_start <= after and row.cycle_end == next_month(row.cycle_start)
    with engine.connect() as conn:
        [cycle] = conn.execute(select(BillingCycle.__table__)).all()
    assert (cycle.user_id, cycle.plan_id, cycle.cycle_start) == (user_id, "basic", start)
    assert (cycle.used_ms, cycle.credit_ms, cycle.quota_ms) == (90_000, 15_000, 3_615_000)
    assert cycle.cycle_end == row.cycle_start
    assert data["archived"]["used_seconds"] == 90 and data["archived"]["credit_seconds"] == 15
    assert data["cycle"]["start"] == row.cycle_start.isoformat()

    spoke = await run_job(api_key=key, text=TEXT, voice="british-female")
    assert spoke["quota"]["used_seconds"] == spoke["duration_seconds"]  # a fresh cycle

    table = await asyncio.to_thread(invoke, "quota", "reset", "--user", "user0@example.com")
    assert table.exit_code == 0, table.stderr
    with engine.connect() as conn:
        assert len(conn.execute(select(BillingCycle.__table__)).all()) == 2
