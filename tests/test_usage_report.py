"""``admin.py usage report``: totals equal what real jobs produced, in table, CSV and JSON.

The jobs run through the worker against the emulator, whose own counters (characters
billed) are the independent check on what the report adds up.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, update
from typer.testing import Result

from minimax_emulator import Emulator
from odeatts.billing import parse_period
from odeatts.errors import AdminError
from odeatts.models import Usage, Voice
from tests.conftest import JobRunner, UserFactory
from tests.support.cli import Invoke
from tests.test_admin_cli import assert_operator_error
from tests.test_admin_voices import write_wav

TEXTS = ["Good evening, Abuja.", "The last bus leaves at ten.", "Mind the gap, please."]
UTC = dt.UTC


async def report(invoke: Invoke, *args: str) -> Result:
    result = await asyncio.to_thread(invoke, "usage", "report", *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


async def produce_usage(
    make_user: UserFactory, run_job: JobRunner, emu: Emulator
) -> dict[str, Any]:
    """Ada: 1 hd + 2 turbo successes and 1 failure; Bo: 1 refusal; Cy: nothing."""
    _, ada = await make_user("basic")
    _, bo = await make_user(used_ms=600_000)
    await make_user()
    hd = await run_job(api_key=ada, text=TEXTS[0], voice="british-female", model="speech-02-hd")
    hd_chars = emu.stats()["characters"]
    turbo = [await run_job(api_key=ada, text=t, voice="american-male") for t in TEXTS[1:]]
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": 1026, "times": 1})
    failed = await run_job(api_key=ada, text=TEXTS[0], voice="british-female")
    refused = await run_job(api_key=bo, text=TEXTS[0], voice="british-female")
    assert "error" not in hd and all("error" not in t for t in turbo), (hd, turbo)
    assert failed["error"]["code"] == "content_rejected"
    assert refused["error"]["code"] == "quota_exceeded"
    chars = emu.stats()["characters"]
    return {
        "seconds": sum(round(j["duration_seconds"] * 1000) for j in [hd, *turbo]) / 1000,
        "characters": chars,
        "cost": round((hd_chars * 100 + (chars - hd_chars) * 60) / 1_000_000, 6),
    }


async def test_report_totals_equal_what_the_jobs_produced(
    invoke: Invoke,
    make_user: UserFactory,
    run_job: JobRunner,
    emu: Emulator,
) -> None:
    expected = await produce_usage(make_user, run_job, emu)

    data = json.loads((await report(invoke, "--format", "json")).stdout)
    ada, bo = data["users"]
    assert (ada["email"], ada["plan"], bo["email"], bo["plan"]) == (
        "user0@example.com",
        "basic",
        "user1@example.com",
        "free",
    )
    assert [ada[k] for k in ("requests", "succeeded", "failed", "refused")] == [4, 3, 1, 0]
    assert [bo[k] for k in ("requests", "succeeded", "failed", "refused")] == [1, 0, 0, 1]
    assert ada["seconds"] == expected["seconds"] and bo["seconds"] == 0
    assert ada["billed_characters"] == expected["characters"] > 0
    assert ada["cost_usd"] == expected["cost"] and bo["cost_usd"] == 0
    assert data["totals"]["requests"] == 5 and data["totals"]["users"] == 2
    month = dt.datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert data["period"]["from"] == month.isoformat() and data["period"]["timezone"] == "UTC"

    rows = list(csv.DictReader(io.StringIO((await report(invoke, "--format", "csv")).stdout)))
    assert [r["email"] for r in rows] == ["user0@example.com", "user1@example.com"]
    assert rows[0]["requests"] == "4" and float(rows[0]["seconds"]) == expected["seconds"]
    assert float(rows[0]["cost_usd"]) == expected["cost"]
    assert rows[0]["period_from"] == data["period"]["from"]
    for row, user in zip(rows, data["users"], strict=True):  # the same line, column by column
        assert row == {
            **{name: str(value) for name, value in user.items()},
            "period_from": data["period"]["from"],
            "period_to": data["period"]["to"],
        }

    table = (await report(invoke)).stdout
    assert "user0@example.com" in table and "2 user(s)" in table and "user2@" not in table

    # Written a user at a time, yet the very text json.dumps would make of the whole.
    streamed = (await report(invoke, "--format", "json")).stdout
    assert streamed == json.dumps(json.loads(streamed), indent=2) + "\n"


async def test_period_user_and_output_file(
    invoke: Invoke,
    engine: Engine,
    make_user: UserFactory,
    run_job: JobRunner,
    emu: Emulator,
    tmp_path: Path,
) -> None:
    await produce_usage(make_user, run_job, emu)
    now = dt.datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:  # Bo's refusal happened on the last day of last month
        conn.execute(
            update(cast(Table, Usage.__table__))
            .where(Usage.user_id == 2)
            .values(created_at=this_month - dt.timedelta(hours=1))
        )

    current = json.loads((await report(invoke, "--format", "json")).stdout)
    assert [u["email"] for u in current["users"]] == ["user0@example.com"]
    wide = json.loads(
        (
            await report(
                invoke,
                "--format",
                "json",
                "--from",
                (this_month - dt.timedelta(days=2)).date().isoformat(),
                "--to",
                (now + dt.timedelta(days=1)).isoformat(),
            )
        ).stdout
    )
    assert [u["refused"] for u in wide["users"]] == [0, 1]

    only = json.loads(
        (await report(invoke, "--format", "json", "--user", "USER2@example.com")).stdout
    )
    assert [(u["email"], u["requests"], u["cost_usd"]) for u in only["users"]] == [
        ("user2@example.com", 0, 0)
    ]
    assert (
        json.loads((await report(invoke, "--format", "json", "--user", "1")).stdout)["users"][0][
            "requests"
        ]
        == 4
    )

    target = tmp_path / "usage.csv"
    written = await report(
        invoke, "--format", "csv", "--output", str(target), "--to", this_month.isoformat()
    )
    assert written.stdout == "" and "wrote 1 user(s)" in written.stderr
    [last_month] = list(csv.DictReader(io.StringIO(target.read_text())))
    assert (last_month["email"], last_month["refused"]) == ("user1@example.com", "1")


async def test_the_report_shows_what_clone_previews_cost(
    invoke: Invoke,
    engine: Engine,
    make_user: UserFactory,
    run_job: JobRunner,
    emu: Emulator,
    tmp_path: Path,
) -> None:
    await produce_usage(make_user, run_job, emu)
    jobs = emu.stats()["characters"]
    sample = write_wav(tmp_path / "ada.wav", 12)
    for name, model in (("ada-hd", "speech-02-hd"), ("ada-turbo", "speech-02-turbo")):
        made = await asyncio.to_thread(
            invoke,
            "voices",
            "clone",
            "--name",
            name,
            "--file",
            str(sample),
            "--language",
            "en-NG",
            "--gender",
            "female",
            "--preview-text",
            "Good evening, Abuja.",
            "--model",
            model,
            "--json",
        )
        assert made.exit_code == 0, made.stderr
    previews = emu.stats()["characters"] - jobs
    assert previews == 2 * 20
    await asyncio.to_thread(
        invoke,
        "voices",
        "clone",
        "--name",
        "ada-silent",
        "--file",
        str(sample),
        "--language",
        "en-NG",
        "--gender",
        "female",
    )

    data = json.loads((await report(invoke, "--format", "json")).stdout)
    assert data["clones"] == {
        "previews": 2,
        "preview_characters": 40,
        "cost_usd": round((20 * 100 + 20 * 60) / 1_000_000, 6),
    }
    table = " ".join((await report(invoke)).stdout.split())
    assert "clone previews: 2, 40 characters, $0.0032" in table
    # Last month's clones are last month's cost.
    this_month = dt.datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            update(cast(Table, Voice.__table__))
            .where(Voice.__table__.c.name == "ada-hd")
            .values(created_at=this_month - dt.timedelta(hours=1))
        )
    again = json.loads((await report(invoke, "--format", "json")).stdout)
    assert again["clones"]["previews"] == 1 and again["clones"]["preview_characters"] == 20
    only = json.loads((await report(invoke, "--format", "json", "--user", "1")).stdout)
    assert only["clones"] is None, "clones belong to no user"


async def test_report_mistakes_are_one_line(
    invoke: Invoke, make_user: UserFactory, tmp_path: Path
) -> None:
    await make_user()
    mistakes = [
        (["--from", "2026-13-01"], ["--from", "2026-13-01"]),
        (["--to", "yesterday"], ["--to", "yesterday"]),
        (["--from", "2026-03-01", "--to", "2026-03-01"], ["must be before"]),
        (["--from", "2026-04-01", "--to", "2026-03-01"], ["must be before"]),
        (["--format", "xml"], ["--format", "table, csv, json"]),
        (["--user", "nobody@example.com"], ["no user", "nobody@example.com"]),
        (["--output", str(tmp_path / "missing" / "x.csv"), "--format", "csv"], ["cannot write"]),
    ]
    for args, words in mistakes:
        result = await asyncio.to_thread(invoke, "usage", "report", *args)
        try:
            assert_operator_error(result, 2, *words)
        except AssertionError as exc:
            raise AssertionError(f"usage report {' '.join(args)}: {exc}") from exc


# --- the period, without I/O ---------------------------------------------------------------

NOW = dt.datetime(2026, 3, 15, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, ("2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00")),
        (None, "2026-03-01", ("2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00")),
        (None, "2026-01-15T06:00", ("2026-01-01T00:00:00+00:00", "2026-01-15T06:00:00+00:00")),
        ("2026-01-01", None, ("2026-01-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00")),
        (
            "2026-03-10T01:00:00+01:00",
            "2026-03-11",
            ("2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"),
        ),
        (
            "2025-12-01",
            "2026-01-01T00:00Z",
            ("2025-12-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"),
        ),
    ],
)
def test_the_period_is_utc_and_end_exclusive(
    start: str | None, end: str | None, expected: tuple[str, str]
) -> None:
    got = parse_period(start, end, now=NOW)
    assert (got[0].isoformat(), got[1].isoformat()) == expected


@pytest.mark.parametrize(
    ("start", "end"), [("2026-04-01", None), ("2026-02-30", None), (None, "March")]
)
def test_a_bad_period_is_an_admin_error(start: str | None, end: str | None) -> None:
    with pytest.raises(AdminError):
        parse_period(start, end, now=NOW)
