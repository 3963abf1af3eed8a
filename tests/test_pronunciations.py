"""Pronunciations: a job's own, and the dictionaries operators save per user and per voice.

The rules of an entry and the merge are pure (schemas.py) and tested without I/O; the
saved dictionaries run on both backends, because the user's come back with the
reservation by a different path on each (SQL beside odeatts_reserve, or Python).
What MiniMax was sent is read from the emulator (its stats keep each synthesis's
pronunciation_dict.tone).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from minimax_emulator import Emulator
from odeatts.errors import InvalidRequest
from odeatts.schemas import (
    MAX_PRONUNCIATIONS,
    merge_pronunciations,
    parse_job,
    pronunciation_problem,
)
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, backend_independent
from tests.support.cli import Invoke
from tests.test_admin_cli import assert_operator_error

TEXT = "Adebayo and Chiamaka met Ngozi in Lagos."


# --- the rules of an entry (pure) ----------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        {"Adebayo": "a-de-ba-yo"},
        {"omg": "oh my god"},
        {"处理": "(chu3)(li3)"},
        {"Oluwaseun": "o-lu-wa-shay-oon", "Ngozi": "n-go-zi"},
        {"w" * 64: "p" * 128},
        {},
    ],
)
def test_entries_minimax_can_read_are_accepted(entries: dict[str, str]) -> None:
    assert pronunciation_problem(entries) is None


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ({"Ade/bayo": "x"}, "'/'"),  # "/" separates word from replacement
        ({"Adebayo": "a/de"}, "'/'"),
        ({"(Ade)": "x"}, "parentheses"),
        ({"Adebayo": "a-(de"}, "tones"),  # a broken tone
        ({"Adebayo": "(a)de"}, "tones"),
        ({"Ade\nbayo": "x"}, "line breaks"),
        ({"Adebayo": "a\tde"}, "line breaks"),
        ({"": "x"}, "1 to 64"),
        ({" Adebayo": "x"}, "surrounding spaces"),
        ({"Adebayo": ""}, "1 to 128"),
        ({"w" * 65: "x"}, "1 to 64"),
        ({"w": "p" * 129}, "1 to 128"),
        ({f"w{i}": "p" for i in range(MAX_PRONUNCIATIONS + 1)}, f"at most {MAX_PRONUNCIATIONS}"),
    ],
)
def test_entries_that_would_break_the_format_are_refused(
    entries: dict[str, str], words: str
) -> None:
    problem = pronunciation_problem(entries)
    assert problem is not None and words in problem


def refusal(**fields: Any) -> dict[str, Any]:
    raw = {"api_key": "odea_AbCd1234_" + "k" * 32, "text": "Hi.", "voice": "x", **fields}
    with pytest.raises(InvalidRequest) as info:
        parse_job({"id": "job-1", "input": raw}, max_text_chars=100)
    return info.value.to_dict()


@pytest.mark.parametrize(
    "value", [{"Ade/bayo": "x"}, {"Adebayo": 3}, ["Adebayo/a-de-ba-yo"], "Adebayo=a-de-ba-yo"]
)
def test_a_bad_job_dictionary_is_invalid_request_naming_the_field(value: Any) -> None:
    error = refusal(pronunciations=value)
    assert error["code"] == "invalid_request" and error["field"].startswith("pronunciations")


def test_the_job_wins_over_the_user_and_the_user_over_the_voice() -> None:
    merged = merge_pronunciations(
        {"Adebayo": "job"},
        {"Adebayo": "user", "Ngozi": "user"},
        {"Adebayo": "voice", "Ngozi": "voice", "Chiamaka": "voice"},
    )
    assert dict(merged) == {"Adebayo": "job", "Ngozi": "user", "Chiamaka": "voice"}
    assert merge_pronunciations({}, None, None) == ()


# --- saved dictionaries, through the admin CLI and a job ---------------------------------
# Only the merge runs on both backends: the user's dictionary is read by SQL beside
# odeatts_reserve on Postgres and in Python on SQLite.


async def admin(invoke: Invoke, *args: str) -> dict[str, Any]:
    result = await asyncio.to_thread(invoke, "pronunciations", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def last_tone(emu: Emulator) -> set[str]:
    return set(emu.stats()["tones"][-1])


async def test_saved_dictionaries_are_merged_into_every_job(
    invoke: Invoke, make_user: UserFactory, run_job: JobRunner, worker: Worker, emu: Emulator
) -> None:
    user_id, key = await make_user()
    await admin(
        invoke,
        "set",
        "--voice",
        "nigerian-female",
        "--entry",
        "Adebayo=voice",
        "--entry",
        "Ngozi=n-go-zi",
    )
    await admin(
        invoke,
        "set",
        "--user",
        str(user_id),
        "--entry",
        "Adebayo=a-de-ba-yo",
        "--entry",
        "Chiamaka=user",
    )
    job = {"api_key": key, "text": TEXT, "voice": "nigerian-female"}

    out = await run_job(**job, pronunciations={"Chiamaka": "chi-a-ma-ka"})
    assert "error" not in out, out
    assert last_tone(emu) == {"Adebayo/a-de-ba-yo", "Chiamaka/chi-a-ma-ka", "Ngozi/n-go-zi"}

    # A user's change applies from their next job; another voice has no dictionary.
    await admin(invoke, "remove", "--user", str(user_id), "--word", "Chiamaka")
    assert "error" not in await run_job(**job)
    assert last_tone(emu) == {"Adebayo/a-de-ba-yo", "Ngozi/n-go-zi"}
    assert "error" not in await run_job(**(job | {"voice": "british-male"}))
    assert last_tone(emu) == {"Adebayo/a-de-ba-yo"}

    # A voice's change, within the voice cache's minute (here: its next reload).
    await admin(invoke, "remove", "--voice", "nigerian-female", "--all")
    await admin(invoke, "remove", "--user", str(user_id), "--all")
    await worker.pipeline().voices.reload()
    assert "error" not in await run_job(**job)
    assert last_tone(emu) == set()


@backend_independent
async def test_the_cli_lists_sets_and_replaces(invoke: Invoke, make_user: UserFactory) -> None:
    user_id, _ = await make_user()
    await admin(invoke, "set", "--user", str(user_id), "--entry", "Adebayo=a-de-ba-yo")
    done = await admin(
        invoke, "set", "--user", "user0@example.com", "--entry", "Adebayo=a-dey-ba-yo"
    )
    assert done == {
        "owner": f"user {user_id} user0@example.com",
        "pronunciations": {"Adebayo": "a-dey-ba-yo"},
    }
    listed = await admin(invoke, "list", "--voice", "nigerian-male")
    assert listed == {"owner": "voice nigerian-male", "pronunciations": {}}


@backend_independent
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["set", "--user", "1", "--entry", "Adebayo"], "WORD=PRONUNCIATION"),
        (["set", "--user", "1", "--entry", "Ade/bayo=x"], "'/'"),
        (["set", "--entry", "Adebayo=x"], "--user or --voice"),
        (["set", "--user", "1", "--voice", "nigerian-male", "--entry", "A=x"], "--user or --voice"),
        (["set", "--voice", "martian", "--entry", "A=x"], "no voice named"),
        (["set", "--user", "nobody@example.com", "--entry", "A=x"], "no user"),
        (["remove", "--user", "1", "--word", "Adebayo"], "no entry for 'Adebayo'"),
        (["remove", "--user", "1"], "--all"),
    ],
)
async def test_operator_mistakes_are_one_line(
    invoke: Invoke, make_user: UserFactory, args: list[str], words: str
) -> None:
    await make_user()  # user 1
    result = await asyncio.to_thread(invoke, "pronunciations", *args)
    assert_operator_error(result, 2, words)


@backend_independent
async def test_a_saved_dictionary_keeps_to_the_job_limit(
    invoke: Invoke, make_user: UserFactory
) -> None:
    user_id, _ = await make_user()
    many = [arg for i in range(MAX_PRONUNCIATIONS) for arg in ("--entry", f"w{i}=p")]
    await admin(invoke, "set", "--user", str(user_id), *many)
    result = await asyncio.to_thread(
        invoke, "pronunciations", "set", "--user", str(user_id), "--entry", "one=more"
    )
    assert_operator_error(result, 2, f"at most {MAX_PRONUNCIATIONS}")
