"""What every admin command promises about its output and its options.

- every command takes ``--json``;
- ``--help`` marks each required option ``[required]``, and leaving one out is one
  ``error: --X is required`` line (exit 2);
- a fixed choice (gender, kind, language shape, format, model) refuses anything else;
- piped (CliRunner's stdout is no terminal, like a cron log), a table never cuts or
  wraps a value: a long email or MiniMax id comes out whole, each record on one line;
- users, keys, quota and usage views print seconds and times the same way.

Formatting does not depend on the database: what needs one runs on the embedded
backend only.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, insert, select, update
from typer.testing import CliRunner, Result

from odeatts.cli import app
from odeatts.config import Settings
from odeatts.models import ApiKey, Usage, User, Voice
from tests.support.cli import Invoke, cli_env, commands
from tests.test_admin_cli import assert_operator_error, create_user

EMBEDDED = pytest.mark.parametrize("backend", ["embedded"])

# Longer than a default 80-column console by itself: any cut or wrap would split it.
LONG_EMAIL = "accounts-payable.department@lagos-office.a-rather-long-company-name.example.com"
LONG_ID = "odea-nigerian-female-ada-recorded-in-the-lagos-studio-on-a-long-afternoon-3f9a1c"
NARROW = {"COLUMNS": "40"}  # what a cron job or a narrow pipe might report
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def whole_on_one_line(output: str, value: str, *also: str) -> None:
    """``value`` is never split: every line holding its start or its end holds all of it;
    the record's line also holds the record's other cells (``also``)."""
    head, tail = value[:12], value[-12:]
    touched = [line for line in output.splitlines() if head in line or tail in line]
    assert touched, output
    assert all(value in line for line in touched), output
    assert any(all(cell in line for cell in also) for line in touched), output


# --- every command ------------------------------------------------------------------------


def test_every_command_takes_json() -> None:
    missing = [
        " ".join(path)
        for path, command in commands()
        if not any("--json" in param.opts for param in command.params)
    ]
    assert missing == []


def test_help_marks_required_options_and_leaving_one_out_is_one_line() -> None:
    runner = CliRunner()
    for path, command in commands():
        required = [param.opts[0] for param in command.params if param.required]
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
        assert shown.exit_code == 0, shown.stderr
        lines = shown.stdout.splitlines()
        marked = [line for line in lines if "[required]" in line]
        assert len(marked) == len(required), (path, shown.stdout)
        for option in required:
            assert any(re.search(rf"{option}\b", line) for line in marked), (path, option)
        if required:  # nothing given: the first required option is named, in one line
            result = runner.invoke(app, path, env={})
            flat = assert_operator_error(result, 2, f"{required[0]} is required")
            assert len(result.stderr.splitlines()) == 1, flat


def test_a_mistyped_top_level_option_is_one_line_too() -> None:
    result = CliRunner().invoke(app, ["--bogus", "users", "list"], env={})
    assert_operator_error(result, 2, "--bogus")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["voices", "list", "--gender", "alien"], ["--gender", "alien", "male, female, neutral"]),
        (["voices", "list", "--kind", "designed"], ["--kind", "system, cloned"]),
        (["voices", "list", "--language", "klingon please"], ["--language", "BCP-47"]),
        (["voices", "update", "--name", "british-male", "--gender", "robot"], ["--gender"]),
        (
            [
                "voices",
                "clone",
                "--name",
                "x-voice",
                "--file",
                "x.wav",
                "--language",
                "en-NG",
                "--gender",
                "female",
                "--model",
                "speech-9",
            ],
            ["--model", "speech-02-hd"],
        ),
        (["usage", "report", "--format", "xml"], ["--format", "table, csv, json"]),
        (["usage", "report", "--json", "--format", "csv"], ["--json", "--format csv"]),
    ],
)
def test_a_value_outside_a_fixed_choice_is_an_error(args: list[str], words: list[str]) -> None:
    """Refused while reading the options: no database or MiniMax is asked anything."""
    result = CliRunner().invoke(app, args, env={"DATABASE_URL": "postgresql://nowhere:1/x"})
    assert_operator_error(result, 2, *words)
    assert len(result.stderr.splitlines()) == 1


@EMBEDDED
def test_a_valid_filter_still_lists(invoke: Invoke) -> None:
    listed = json.loads(
        ok(invoke("voices", "list", "--gender", "female", "--language", "EN-ng", "--json"))
    )
    assert [v["name"] for v in listed["voices"]] == ["nigerian-female"]


@EMBEDDED
def test_usage_report_json_is_format_json(invoke: Invoke) -> None:
    ok(create_user(invoke))
    assert json.loads(ok(invoke("usage", "report", "--json"))) == json.loads(
        ok(invoke("usage", "report", "--format", "json", "--json"))
    )


# --- piped output -------------------------------------------------------------------------


def long_user(invoke: Invoke, engine: Engine) -> dict[str, Any]:
    created: dict[str, Any] = json.loads(
        ok(
            invoke(
                "users",
                "create",
                "--name",
                "Ada Obi",
                "--email",
                LONG_EMAIL,
                "--plan",
                "enterprise",
                "--json",
            )
        )
    )
    with engine.begin() as conn:
        key_id = conn.execute(select(ApiKey.id)).scalar_one()
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            insert(cast(Table, Usage.__table__)).values(
                job_id="job-1",
                user_id=created["id"],
                api_key_id=key_id,
                voice="british-female",
                model="speech-02-turbo",
                text_chars=20,
                estimated_ms=2_000,
                status="succeeded",
                attempts=1,
                created_at=now,
                reserved_at=now,
                duration_ms=100_560,
            )
        )
        conn.execute(update(cast(Table, User.__table__)).values(used_ms=100_560, credit_ms=60_000))
    return created


@EMBEDDED
def test_piped_tables_keep_every_value_whole(
    invoke: Invoke, engine: Engine, settings: Settings
) -> None:
    created = long_user(invoke, engine)
    uid = str(created["id"])
    with engine.begin() as conn:
        conn.execute(
            insert(cast(Table, Voice.__table__)).values(
                name="nigerian-female-ada",
                minimax_voice_id=LONG_ID,
                language="en-NG",
                gender="female",
                kind="cloned",
                active=True,
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    env = {**cli_env(settings), **NARROW}
    runs = {
        "users show": (["users", "show", "--user", uid], ["email"]),
        "users list": (["users", "list"], ["Ada Obi", "enterprise", "100.6"]),
        "keys list": (["keys", "list", "--user", uid], ["keys of user"]),
        "keys issue": (["keys", "issue", "--user", uid], ["user"]),
        "quota show": (["quota", "show", "--user", uid], ["user", f"(id {uid})"]),
        "usage report": (["usage", "report"], ["enterprise", "100.6", "1"]),
    }
    for name, (args, cells) in runs.items():
        output = ok(invoke(*args, env=env))
        try:
            whole_on_one_line(output, LONG_EMAIL, *cells)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
    voices = ok(invoke("voices", "list", "--kind", "cloned", env=env))
    whole_on_one_line(voices, LONG_ID, "nigerian-female-ada", "cloned", "unused until")
    reset = ok(invoke("quota", "reset", "--user", uid, env=env))
    whole_on_one_line(reset, LONG_EMAIL, "100.6", "60.0")


@EMBEDDED
def test_a_piped_table_is_its_title_a_header_and_one_line_per_record(
    invoke: Invoke, settings: Settings
) -> None:
    for n in range(3):
        ok(create_user(invoke, f"user{n}@example.com"))
    output = ok(invoke("users", "list", env={**cli_env(settings), **NARROW}))
    lines = [
        line
        for line in output.splitlines()
        if line.strip() and not set(line) <= set("┏━┳┓┡╇┩└─┴┘ ")
    ]  # not the rules
    assert lines[0] == "3 users"
    assert [cell.strip() for cell in lines[1].strip().strip("┃").split("┃")] == [
        "id",
        "email",
        "name",
        "plan",
        "active",
        "used s",
        "limit s",
        "keys",
    ]
    assert [line.split("│")[2].strip() for line in lines[2:]] == [
        "user0@example.com",
        "user1@example.com",
        "user2@example.com",
    ]


# --- the same units everywhere ------------------------------------------------------------


@EMBEDDED
def test_users_quota_keys_and_usage_print_the_same_seconds_and_times(
    invoke: Invoke, engine: Engine
) -> None:
    created = long_user(invoke, engine)
    uid = str(created["id"])
    with engine.connect() as conn:
        row = conn.execute(select(User.__table__)).one()
        key_created = conn.execute(select(ApiKey.created_at)).scalar_one()
    start = row.cycle_start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = row.cycle_end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    views = {
        name: ok(invoke(*args))
        for name, args in {
            "users show": ["users", "show", "--user", uid],
            "users list": ["users", "list"],
            "quota show": ["quota", "show", "--user", uid],
            "keys list": ["keys", "list", "--user", uid],
            "usage report": ["usage", "report"],
        }.items()
    }
    for name in ("users show", "users list", "quota show", "usage report"):
        assert "100.6" in views[name], name  # 100,560 ms, one decimal everywhere
    for name in ("users show", "quota show"):
        assert start in views[name] and end in views[name], name
        assert "60.0" in views[name] and "14460.0" in views[name] and "14359.4" in views[name]
    key_time = key_created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert key_time in views["keys list"] and key_time in views["users show"]
    for name, output in views.items():
        assert "+00:00" not in output and " UTC" not in output, name
        assert ISO_UTC.search(output) or name == "users list", name
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m-01T00:00:00Z")
    assert f"usage from {month} to " in views["usage report"]
