"""``admin.py keys``: issue, list, revoke, rotate.

Every key the CLI makes or stops is proved by a speech job through ``run_job`` on both
backends: an issued key works, a revoked key is ``unauthorized`` at once, a rotated key
stops at once or when its grace ends (set into the past in the database: no sleeping).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any, cast

from sqlalchemy import Engine, Table, func, insert, select, text, update

from odeatts.config import Settings
from odeatts.keys import hash_key
from odeatts.models import ApiKey, Usage
from tests.conftest import JobRunner
from tests.support.cli import Invoke
from tests.test_admin_cli import KEY_SHAPE, assert_operator_error, create_user
from tests.test_admin_users import cli, error_code, ok_json, speak

KEYS = cast(Table, ApiKey.__table__)
TEXT_TOO_LONG = "x" * 6000  # refused before it reaches the database: not a use of the key


def new_user(invoke: Invoke, email: str = "ada@example.com") -> dict[str, Any]:
    made: dict[str, Any] = ok_json(create_user(invoke, email, "free", "--json"))
    return made


def key_row(engine: Engine, prefix: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(KEYS).where(KEYS.c.prefix == prefix)).one()


def set_key(engine: Engine, prefix: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(KEYS).where(KEYS.c.prefix == prefix).values(**values))


def key_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(KEYS)).scalar_one())


def listed(invoke: Invoke, user: str) -> dict[str, dict[str, Any]]:
    data = ok_json(invoke("keys", "list", "--user", user, "--json"))
    return {k["prefix"]: k for k in data["keys"]}


# --- issue ---------------------------------------------------------------------------------


async def test_an_issued_key_works_and_only_its_hash_is_stored(
    invoke: Invoke, engine: Engine, settings: Settings, run_job: JobRunner
) -> None:
    user = await asyncio.to_thread(new_user, invoke)
    data = ok_json(
        await cli(
            invoke, "keys", "issue", "--user", "ADA@example.com", "--label", "mobile app", "--json"
        )
    )
    plain = data["api_key"]
    assert KEY_SHAPE.fullmatch(plain) and data["prefix"] == plain[:13]
    assert (data["user_id"], data["label"], data["state"]) == (user["id"], "mobile app", "active")
    row = key_row(engine, data["prefix"])
    assert row.key_hash == hash_key(plain, settings.pepper) and row.user_id == user["id"]
    with engine.connect() as conn:
        for table in ("users", "api_keys", "usage"):
            dump = repr(conn.execute(text(f'SELECT * FROM "{table}"')).all())
            assert plain.split("_")[2] not in dump, table
    out = await speak(run_job, plain)
    assert "error" not in out, out
    assert "error" not in await speak(run_job, user["api_key"])  # the first key still works


def test_the_issued_key_is_shown_once_in_the_table(invoke: Invoke) -> None:
    new_user(invoke)
    result = invoke("keys", "issue", "--user", "1", "--label", "[red]ci[/red]")
    assert result.exit_code == 0, result.stderr
    assert len(KEY_SHAPE.findall(result.stdout)) == 1
    assert "shown only once" in result.stdout and "[red]ci[/red]" in result.stdout


def test_issue_mistakes(invoke: Invoke, engine: Engine) -> None:
    new_user(invoke)
    assert_operator_error(invoke("keys", "issue", "--user", "bob@example.com"), 2, "no user")
    assert_operator_error(invoke("keys", "issue", "--user", "1", "--label", " "), 2, "label")
    assert_operator_error(invoke("keys", "issue", "--user", "1", "--label", "x" * 101), 2, "label")
    assert key_count(engine) == 1


# --- list ----------------------------------------------------------------------------------


async def test_list_shows_last_use_and_never_the_key(
    invoke: Invoke, engine: Engine, run_job: JobRunner
) -> None:
    user = await asyncio.to_thread(new_user, invoke)
    second = ok_json(await cli(invoke, "keys", "issue", "--user", "1", "--json"))
    assert "error" not in await speak(run_job, user["api_key"])
    assert (
        error_code(
            await run_job(api_key=user["api_key"], text=TEXT_TOO_LONG, voice="british-female")
        )
        == "invalid_request"
    )
    result = await cli(invoke, "keys", "list", "--user", "ada@example.com", "--json")
    keys = {k["prefix"]: k for k in ok_json(result)["keys"]}
    with engine.connect() as conn:
        last = conn.execute(select(func.max(Usage.__table__.c.created_at))).scalar_one()
        hashes = conn.execute(select(KEYS.c.key_hash)).scalars().all()
    first = keys[user["key_prefix"]]
    assert dt.datetime.fromisoformat(first["last_used_at"]) == last
    assert keys[second["prefix"]]["last_used_at"] is None
    assert [k["state"] for k in keys.values()] == ["active", "active"]
    table = await cli(invoke, "keys", "list", "--user", "1")
    for output in (result.stdout, table.stdout):
        assert not KEY_SHAPE.search(output)
        assert not any(h in output for h in hashes)
    assert second["prefix"] in table.stdout and "never" in table.stdout


def test_list_states(invoke: Invoke, engine: Engine) -> None:
    new_user(invoke)
    prefixes = [
        ok_json(invoke("keys", "issue", "--user", "1", "--json"))["prefix"] for _ in range(3)
    ]
    now = dt.datetime.now(dt.UTC)
    set_key(engine, prefixes[0], revoked_at=now)
    set_key(engine, prefixes[1], expires_at=now + dt.timedelta(hours=1))
    set_key(engine, prefixes[2], expires_at=now - dt.timedelta(seconds=1))
    keys = listed(invoke, "1")
    assert [keys[p]["state"] for p in prefixes] == ["revoked", "expiring", "expired"]
    assert next(iter(keys.values()))["state"] == "active"
    table = invoke("keys", "list", "--user", "1").stdout
    assert "revoked" in table and "expires" in table and "expired" in table


# --- revoke --------------------------------------------------------------------------------


async def test_a_revoked_key_is_refused_at_once_and_revoking_twice_is_fine(
    invoke: Invoke, engine: Engine, run_job: JobRunner
) -> None:
    user = await asyncio.to_thread(new_user, invoke)
    other = ok_json(await cli(invoke, "keys", "issue", "--user", "1", "--json"))
    key, prefix = user["api_key"], user["key_prefix"]
    assert "error" not in await speak(run_job, key)
    data = ok_json(await cli(invoke, "keys", "revoke", "--prefix", prefix, "--json"))
    assert (data["prefix"], data["state"], data["already_revoked"]) == (prefix, "revoked", False)
    assert data["last_used_at"] is not None
    assert error_code(await speak(run_job, key)) == "unauthorized"
    assert error_code(await run_job(api_key=key, action="usage")) == "unauthorized"
    revoked_at = key_row(engine, prefix).revoked_at
    again = ok_json(await cli(invoke, "keys", "revoke", "--prefix", prefix, "--json"))
    assert again["already_revoked"] is True
    assert key_row(engine, prefix).revoked_at == revoked_at  # the first time stands
    said = await cli(invoke, "keys", "revoke", "--prefix", prefix)
    assert said.exit_code == 0 and "already revoked" in said.stdout
    assert "error" not in await speak(run_job, other["api_key"])  # only that key stopped


async def test_revoke_by_id(invoke: Invoke, engine: Engine, run_job: JobRunner) -> None:
    user = await asyncio.to_thread(new_user, invoke)
    key_id = key_row(engine, user["key_prefix"]).id
    result = await cli(invoke, "keys", "revoke", "--id", str(key_id))
    assert result.exit_code == 0, result.stderr
    assert user["key_prefix"] in result.stdout and "revoked at" in result.stdout
    assert error_code(await speak(run_job, user["api_key"])) == "unauthorized"


def test_revoke_mistakes(invoke: Invoke, engine: Engine) -> None:
    user = new_user(invoke)
    for args, words in (
        ([], ["--prefix", "--id"]),
        (["--prefix", user["key_prefix"], "--id", "1"], ["exactly one"]),
        (["--prefix", "odea_abc"], ["not a key prefix"]),
        (["--prefix", "odea_ZZZZZZZZ"], ["no key"]),
        (["--id", "999"], ["no key"]),
        (["--id", "99999999999"], ["no key"]),
    ):
        assert_operator_error(invoke("keys", "revoke", *args, "--json"), 2, *words)
    assert key_row(engine, user["key_prefix"]).revoked_at is None
    # Two keys can share a prefix (8 random characters): ambiguity asks for the id.
    with engine.begin() as conn:
        conn.execute(
            insert(KEYS).values(
                user_id=user["id"],
                prefix=user["key_prefix"],
                key_hash="0" * 64,
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    assert_operator_error(
        invoke("keys", "revoke", "--prefix", user["key_prefix"]), 2, "2 keys", "--id"
    )
    assert ok_json(invoke("keys", "revoke", "--id", "2", "--json"))["prefix"] == user["key_prefix"]
    with engine.connect() as conn:  # id 1 is untouched
        assert conn.execute(select(KEYS.c.revoked_at).where(KEYS.c.id == 1)).scalar() is None
    # A leaked key pasted whole is named by its prefix.
    bob = new_user(invoke, "bob@example.com")
    data = ok_json(invoke("keys", "revoke", "--prefix", bob["api_key"], "--json"))
    assert (data["prefix"], data["already_revoked"]) == (bob["key_prefix"], False)


# --- rotate --------------------------------------------------------------------------------


async def test_rotate_without_grace_stops_the_old_key_at_once(
    invoke: Invoke, engine: Engine, run_job: JobRunner
) -> None:
    user = await asyncio.to_thread(new_user, invoke)
    data = ok_json(await cli(invoke, "keys", "rotate", "--prefix", user["key_prefix"], "--json"))
    new = data["new"]
    assert KEY_SHAPE.fullmatch(new["api_key"]) and new["label"] == "first key (rotated)"
    assert (data["old"]["state"], data["grace_seconds"], new["user_id"]) == (
        "revoked",
        0,
        user["id"],
    )
    assert error_code(await speak(run_job, user["api_key"])) == "unauthorized"
    assert "error" not in await speak(run_job, new["api_key"])
    assert key_row(engine, user["key_prefix"]).revoked_at is not None
    again = ok_json(await cli(invoke, "keys", "rotate", "--prefix", new["prefix"], "--json"))
    assert again["new"]["label"] == "first key (rotated)"  # the suffix does not stack


async def test_rotate_with_grace_keeps_the_old_key_until_it_expires(
    invoke: Invoke, engine: Engine, run_job: JobRunner
) -> None:
    user = await asyncio.to_thread(new_user, invoke)
    before = dt.datetime.now(dt.UTC)
    data = ok_json(
        await cli(
            invoke, "keys", "rotate", "--prefix", user["key_prefix"], "--grace", "3600", "--json"
        )
    )
    old, new = data["old"], data["new"]
    expires = dt.datetime.fromisoformat(old["expires_at"])
    assert old["state"] == "expiring" and old["revoked_at"] is None
    assert before + dt.timedelta(seconds=3599) < expires < before + dt.timedelta(seconds=3660)
    assert "error" not in await speak(run_job, user["api_key"])
    assert "error" not in await speak(run_job, new["api_key"])
    assert_operator_error(
        await cli(invoke, "keys", "rotate", "--prefix", user["key_prefix"]), 2, "already rotated"
    )
    set_key(
        engine, user["key_prefix"], expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    assert error_code(await speak(run_job, user["api_key"])) == "unauthorized"
    assert "error" not in await speak(run_job, new["api_key"])
    assert (await asyncio.to_thread(listed, invoke, "1"))[user["key_prefix"]]["state"] == "expired"


def test_rotate_refusals_make_no_key(invoke: Invoke, engine: Engine) -> None:
    user = new_user(invoke)
    prefix = user["key_prefix"]
    for grace in ("-1", str(31 * 24 * 3600)):
        assert_operator_error(
            invoke("keys", "rotate", "--prefix", prefix, "--grace", grace), 2, "--grace"
        )
    assert_operator_error(invoke("keys", "rotate", "--prefix", "odea_ZZZZZZZZ"), 2, "no key")
    ok_json(invoke("keys", "revoke", "--prefix", prefix, "--json"))
    assert_operator_error(invoke("keys", "rotate", "--prefix", prefix), 2, "revoked", "keys issue")
    assert key_count(engine) == 1


def test_the_rotated_key_is_shown_once_in_the_table(invoke: Invoke) -> None:
    user = new_user(invoke)
    result = invoke("keys", "rotate", "--prefix", user["key_prefix"], "--grace", "600")
    assert result.exit_code == 0, result.stderr
    [shown] = KEY_SHAPE.findall(result.stdout)
    assert shown != user["api_key"]
    flat = " ".join(result.stdout.split())
    assert "works until" in flat and user["key_prefix"] in flat
    assert json.dumps(user["api_key"]) not in result.stdout
