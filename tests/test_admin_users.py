"""``admin.py users``: show, list, set-plan, set-limits, deactivate/activate.

Driven through Typer's CliRunner against the worker's own database (both backends), and
proved by speech jobs through ``run_job``: a plan or limit change is what the next job
meets, a deactivated user is refused at once. The CLI calls ``asyncio.run``, so async
tests run it in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any, cast

from sqlalchemy import Engine, Table, func, select, update
from typer.testing import Result

from odeatts.models import ApiKey, Usage, User
from tests.conftest import JobRunner, UserFactory
from tests.support.cli import Invoke
from tests.test_admin_cli import TEXT, assert_operator_error, create_user

VOICE = "british-female"


def ok_json(result: Result) -> Any:
    """Exit 0 and nothing on stdout but one JSON document."""
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


async def cli(invoke: Invoke, *args: str) -> Result:
    return await asyncio.to_thread(invoke, *args)


def set_user(engine: Engine, user_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(cast(Table, User.__table__))
            .where(User.__table__.c.id == user_id)
            .values(**values)
        )


def user_row(engine: Engine, user_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(User.__table__).where(User.__table__.c.id == user_id)).one()


async def speak(run_job: JobRunner, key: str) -> dict[str, Any]:
    return await run_job(api_key=key, text=TEXT, voice=VOICE)


def error_code(out: dict[str, Any]) -> str | None:
    return out["error"]["code"] if "error" in out else None


# --- show ----------------------------------------------------------------------------------


def test_show_by_id_or_email_reports_limits_seconds_and_keys(
    invoke: Invoke, engine: Engine
) -> None:
    created = ok_json(create_user(invoke, "ada@example.com", "basic", "--json"))
    uid = created["id"]
    set_user(engine, uid, used_ms=100_500, credit_ms=60_000, rpm_override=99)
    data = ok_json(invoke("users", "show", "--user", str(uid), "--json"))
    assert ok_json(invoke("users", "show", "--user", "ADA@Example.COM", "--json")) == data
    assert (data["id"], data["email"], data["plan"], data["active"]) == (
        uid,
        "ada@example.com",
        "basic",
        True,
    )
    assert data["limits"] == {
        "monthly_seconds": {"value": 3600, "source": "plan"},
        "rpm": {"value": 99, "source": "override"},
        "concurrent_streams": {"value": 2, "source": "plan"},
    }
    assert data["quota"] == {
        "limit_seconds": 3600,
        "credit_seconds": 60.0,
        "total_seconds": 3660.0,
        "used_seconds": 100.5,
        "reserved_seconds": 0.0,
        "remaining_seconds": 3559.5,
    }
    assert data["cycle"]["start"] < data["cycle"]["end"]
    [key] = data["keys"]
    assert key["prefix"] == created["key_prefix"] and key["label"] == "first key"
    assert key["state"] == "active" and key["last_used_at"] is None
    assert created["api_key"] not in json.dumps(data)
    with engine.connect() as conn:
        key_hash = conn.execute(select(ApiKey.__table__.c.key_hash)).scalar_one()
    assert key_hash not in json.dumps(data)


def test_show_as_a_table(invoke: Invoke, engine: Engine) -> None:
    created = ok_json(create_user(invoke, "ada@example.com", "pro", "--json"))
    set_user(engine, created["id"], streams_override=9)
    result = invoke("users", "show", "--user", "ada@example.com")
    assert result.exit_code == 0, result.stderr
    for word in (
        "ada@example.com",
        "pro",
        "9 (override)",
        "60 (plan)",
        created["key_prefix"],
        "active",
        "never",
    ):
        assert word in result.stdout, word
    assert created["api_key"] not in result.stdout
    # Names are data, not rich markup: brackets print as typed, never crash the table.
    odd = invoke("users", "create", "--name", "Ada [/x] Obi", "--email", "b@example.com")
    assert odd.exit_code == 0, odd.stderr
    for args in (["users", "show", "--user", "b@example.com"], ["users", "list"]):
        shown = invoke(*args)
        assert shown.exit_code == 0 and "[/x]" in shown.stdout, shown.stderr


async def test_show_agrees_with_what_the_worker_enforces(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    uid, key = await make_user("basic", credit_ms=30_000, rpm_override=7)
    out = await speak(run_job, key)
    assert "error" not in out, out
    usage = await run_job(api_key=key, action="usage")
    data = ok_json(await cli(invoke, "users", "show", "--user", str(uid), "--json"))
    assert data["quota"]["used_seconds"] == usage["quota"]["used_seconds"] > 0
    assert data["quota"]["remaining_seconds"] == usage["quota"]["remaining_seconds"]
    assert data["quota"]["total_seconds"] == usage["limits"]["monthly_seconds"] == 3630
    assert data["limits"]["rpm"]["value"] == usage["limits"]["rpm"] == 7
    assert data["limits"]["concurrent_streams"]["value"] == usage["limits"]["concurrent_streams"]
    with engine.connect() as conn:
        last = conn.execute(select(func.max(Usage.__table__.c.created_at))).scalar_one()
    assert dt.datetime.fromisoformat(data["keys"][0]["last_used_at"]) == last


def test_an_unknown_user_is_an_operator_error_everywhere(invoke: Invoke, engine: Engine) -> None:
    ok_json(create_user(invoke, "ada@example.com", "free", "--json"))
    commands = [
        ["users", "show"],
        ["users", "set-plan", "--plan", "pro"],
        ["users", "set-limits", "--rpm", "5"],
        ["users", "deactivate"],
        ["users", "activate"],
        ["keys", "issue"],
        ["keys", "list"],
    ]
    for who in ("bob@example.com", "999", "99999999999999999999"):
        for command in commands:
            assert_operator_error(invoke(*command, "--user", who, "--json"), 2, "no user")
    row = user_row(engine, 1)
    assert (row.plan_id, row.active, row.rpm_override) == ("free", True, None)


def test_duplicate_email_is_refused_and_nothing_changes(invoke: Invoke, engine: Engine) -> None:
    ok_json(create_user(invoke, "ada@example.com", "free", "--json"))
    assert_operator_error(
        create_user(invoke, "Ada@EXAMPLE.com", "pro", "--json"), 2, "already exists"
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(User.__table__)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(ApiKey.__table__)).scalar() == 1


def test_mistyped_options_are_one_error_line(invoke: Invoke) -> None:
    for args in (
        ["users", "show"],
        ["users", "show", "--user"],
        ["users", "set-limits", "--user", "1", "--rpm", "many"],
        ["users", "show", "--usr", "1"],
        ["users", "promote", "--user", "1"],
    ):
        result = invoke(*args)
        assert_operator_error(result, 2)
        assert len(result.stderr.splitlines()) == 1, result.stderr


# --- list ----------------------------------------------------------------------------------


def test_list_filters_by_plan_and_activity(invoke: Invoke) -> None:
    for email, plan in (
        ("a@example.com", "free"),
        ("b@example.com", "basic"),
        ("c@example.com", "basic"),
    ):
        ok_json(create_user(invoke, email, plan, "--json"))
    ok_json(invoke("users", "deactivate", "--user", "c@example.com", "--json"))

    def emails(*args: str) -> list[str]:
        return [u["email"] for u in ok_json(invoke("users", "list", *args, "--json"))["users"]]

    assert emails() == ["a@example.com", "b@example.com", "c@example.com"]
    assert emails("--plan", "basic") == ["b@example.com", "c@example.com"]
    assert emails("--plan", "basic", "--inactive") == ["c@example.com"]
    assert emails("--active") == ["a@example.com", "b@example.com"]
    assert emails("--plan", "pro") == []
    [first] = ok_json(invoke("users", "list", "--plan", "free", "--json"))["users"]
    assert (first["monthly_seconds"], first["active_keys"], first["used_seconds"]) == (600, 1, 0)
    table = invoke("users", "list", "--plan", "basic")
    assert table.exit_code == 0 and "2 users" in table.stdout and "c@example.com" in table.stdout
    assert_operator_error(
        invoke("users", "list", "--plan", "gold"), 2, "gold", "free", "basic", "pro", "enterprise"
    )


# --- set-plan ------------------------------------------------------------------------------


async def test_set_plan_applies_to_the_next_job(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    uid, key = await make_user("free", used_ms=600_000)
    assert error_code(await speak(run_job, key)) == "quota_exceeded"
    data = ok_json(
        await cli(invoke, "users", "set-plan", "--user", str(uid), "--plan", "basic", "--json")
    )
    assert (data["previous_plan"], data["plan"], data["changed"]) == ("free", "basic", True)
    assert data["limits"]["monthly_seconds"] == {"value": 3600, "source": "plan"}
    out = await speak(run_job, key)
    assert "error" not in out, out
    assert out["quota"]["used_seconds"] > 600
    again = ok_json(
        await cli(invoke, "users", "set-plan", "--user", str(uid), "--plan", "basic", "--json")
    )
    assert (again["previous_plan"], again["changed"]) == ("basic", False)
    assert user_row(engine, uid).plan_id == "basic"


def test_set_plan_to_an_unknown_plan_lists_the_plans(invoke: Invoke, engine: Engine) -> None:
    uid = ok_json(create_user(invoke, "ada@example.com", "free", "--json"))["id"]
    result = invoke("users", "set-plan", "--user", str(uid), "--plan", "platinum")
    assert_operator_error(result, 2, "platinum", "free, basic, pro, enterprise")
    assert user_row(engine, uid).plan_id == "free"
    table = invoke("users", "set-plan", "--user", "ada@example.com", "--plan", "pro")
    assert table.exit_code == 0 and "free → pro" in " ".join(table.stdout.split())


# --- set-limits ----------------------------------------------------------------------------


async def test_an_rpm_override_changes_admission(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    uid, key = await make_user("free")
    assert "error" not in await speak(run_job, key)  # one of the plan's 10 per minute
    data = ok_json(
        await cli(invoke, "users", "set-limits", "--user", str(uid), "--rpm", "1", "--json")
    )
    assert data["previous"]["rpm"] == {"value": 10, "source": "plan"}
    assert data["limits"]["rpm"] == {"value": 1, "source": "override"}
    refused = await speak(run_job, key)
    assert error_code(refused) == "rate_limited" and refused["error"]["limit"] == 1
    cleared = ok_json(
        await cli(invoke, "users", "set-limits", "--user", str(uid), "--clear", "--json")
    )
    assert cleared["limits"]["rpm"] == {"value": 10, "source": "plan"}
    assert "error" not in await speak(run_job, key)
    row = user_row(engine, uid)
    assert (row.rpm_override, row.streams_override, row.monthly_seconds_override) == (
        None,
        None,
        None,
    )


async def test_a_monthly_override_changes_the_quota(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    uid, key = await make_user("enterprise", used_ms=14_400_000)
    assert error_code(await speak(run_job, key)) == "quota_exceeded"
    data = ok_json(
        await cli(
            invoke,
            "users",
            "set-limits",
            "--user",
            str(uid),
            "--monthly-seconds",
            "20000",
            "--streams",
            "12",
            "--json",
        )
    )
    assert data["limits"] == {
        "monthly_seconds": {"value": 20000, "source": "override"},
        "rpm": {"value": 60, "source": "plan"},
        "concurrent_streams": {"value": 12, "source": "override"},
    }
    out = await speak(run_job, key)
    assert "error" not in out, out
    assert out["quota"]["remaining_seconds"] < 20000 - 14400
    usage = await run_job(api_key=key, action="usage")
    assert usage["limits"]["concurrent_streams"] == 12
    # Setting one limit leaves the others alone.
    await cli(invoke, "users", "set-limits", "--user", str(uid), "--rpm", "5")
    row = user_row(engine, uid)
    assert (row.monthly_seconds_override, row.rpm_override, row.streams_override) == (20000, 5, 12)


def test_set_limits_refuses_what_is_not_a_positive_integer(invoke: Invoke, engine: Engine) -> None:
    uid = ok_json(create_user(invoke, "ada@example.com", "enterprise", "--json"))["id"]
    ok_json(invoke("users", "set-limits", "--user", str(uid), "--rpm", "100", "--json"))
    for args, words in (
        (["--rpm", "0"], ["--rpm", "positive"]),
        (["--streams", "-3"], ["--streams", "positive"]),
        (["--monthly-seconds", "0"], ["--monthly-seconds", "positive"]),
        (["--monthly-seconds", "3000000000"], ["positive"]),
        ([], ["--clear"]),
        (["--clear", "--rpm", "5"], ["--clear"]),
    ):
        result = invoke("users", "set-limits", "--user", str(uid), *args, "--json")
        assert_operator_error(result, 2, *words)
    row = user_row(engine, uid)
    assert (row.rpm_override, row.streams_override, row.monthly_seconds_override) == (
        100,
        None,
        None,
    )
    table = invoke("users", "set-limits", "--user", str(uid), "--streams", "4")
    assert table.exit_code == 0 and "4 (override)" in table.stdout


# --- deactivate / activate -----------------------------------------------------------------


async def test_a_deactivated_user_is_refused_at_once(
    invoke: Invoke, engine: Engine, make_user: UserFactory, run_job: JobRunner
) -> None:
    uid, key = await make_user("free")
    assert "error" not in await speak(run_job, key)
    data = ok_json(await cli(invoke, "users", "deactivate", "--user", str(uid), "--json"))
    assert (data["active"], data["changed"]) == (False, True)
    assert error_code(await speak(run_job, key)) == "unauthorized"
    assert error_code(await run_job(api_key=key, action="usage")) == "unauthorized"
    again = await cli(invoke, "users", "deactivate", "--user", str(uid))
    assert again.exit_code == 0 and "already inactive" in again.stdout
    assert user_row(engine, uid).active is False
    back = ok_json(await cli(invoke, "users", "activate", "--user", "user0@example.com", "--json"))
    assert (back["id"], back["active"], back["changed"]) == (uid, True, True)
    assert "error" not in await speak(run_job, key)
