"""``admin.py voices`` as an operator meets it, against the MiniMax emulator.

Every command runs through Typer's CliRunner on the same database as a real worker,
on both backends; what matters is proved by speech jobs (a clone is usable, a
deactivated voice is not), not by reading rows back. The CLI calls ``asyncio.run``,
so async tests run it in a thread.
"""

from __future__ import annotations

import array
import asyncio
import datetime as dt
import json
import math
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, select, update
from typer.testing import CliRunner, Result

from minimax_emulator import Emulator
from odeatts import catalogue
from odeatts.cli import app
from odeatts.config import Settings
from odeatts.errors import AdminError
from odeatts.models import Voice
from odeatts.worker import Worker
from tests.conftest import EMULATOR_KEY, JobRunner, UserFactory, backend_independent
from tests.support.cli import Invoke, cli_env
from tests.test_admin_cli import ROOT, assert_operator_error

TEXT = "Good evening, Abuja. The last bus leaves at ten."
SEEDED = {
    "nigerian-male",
    "nigerian-female",
    "british-male",
    "british-female",
    "american-male",
    "american-female",
}


def write_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A mono 16-bit sine tone (rate / 32 Hz): real audio MiniMax (and the emulator) can
    measure. One period, repeated: a sample at a time took 150 ms for 12 s of audio."""
    period = array.array("h", (int(6000 * math.sin(2 * math.pi * k / 32)) for k in range(32)))
    count = int(seconds * rate)
    samples = (period * (count // 32 + 1))[:count]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture
def invoke(settings: Settings, emu: Emulator) -> Invoke:
    env = {
        **cli_env(settings),
        "MINIMAX_BASE_URL": emu.url,
        "MINIMAX_API_KEY": EMULATOR_KEY,
        "MINIMAX_RETRY_BASE_SECONDS": "0.01",
    }
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, ["voices", *args], env=env)

    return run


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_error(result: Result, code: int, *words: str) -> str:
    flat = assert_operator_error(result, code, *words)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return flat


def names(listed: dict[str, Any]) -> set[str]:
    return {v["name"] for v in listed["voices"]}


def cloned_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(select(Voice.__table__).where(Voice.__table__.c.kind == "cloned")).all()
        )


def backdate(engine: Engine, name: str, days: float) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(
            update(cast(Table, Voice.__table__))
            .where(Voice.__table__.c.name == name)
            .values(created_at=when)
        )


# --- pure checks ---------------------------------------------------------------------------


def test_derived_voice_ids_follow_minimax_rules_and_never_repeat() -> None:
    for name in ("abc", "9-lives", "n" * 64):
        first, second = catalogue.derive_voice_id(name), catalogue.derive_voice_id(name)
        assert first != second
        assert catalogue.VOICE_ID.fullmatch(first), first


@pytest.mark.parametrize(
    "spec",
    [
        "English_CalmWoman",
        "English_CalmWoman=calm:en-US",
        "=calm-woman:en-US:female",
        "X=Calm Woman:en-US:female",
        "X=calm-woman:en-US:robot",
    ],
)
def test_bad_import_specs_are_refused(spec: str) -> None:
    with pytest.raises(AdminError):
        catalogue.parse_import(spec)


# --- add -----------------------------------------------------------------------------------


def test_add_checks_the_id_with_minimax(invoke: Invoke, emu: Emulator, engine: Engine) -> None:
    unknown = invoke(
        "add",
        "--name",
        "ghost-voice",
        "--minimax-id",
        "No_Such_Voice_Id",
        "--language",
        "en-US",
        "--gender",
        "female",
    )
    one_error(unknown, 2, "MiniMax does not know voice id", "No_Such_Voice_Id")
    added = ok_json(
        invoke(
            "add",
            "--name",
            "calm-woman",
            "--minimax-id",
            "English_CalmWoman",
            "--language",
            "en-US",
            "--gender",
            "female",
            "--json",
        )
    )
    assert added == {
        "name": "calm-woman",
        "minimax_voice_id": "English_CalmWoman",
        "language": "en-US",
        "gender": "female",
        "kind": "system",
    }
    asked = emu.stats()["requests"]["get_voice"]
    duplicate = invoke(
        "add",
        "--name",
        "calm-woman",
        "--minimax-id",
        "English_Upbeat_Woman",
        "--language",
        "en-US",
        "--gender",
        "female",
    )
    one_error(duplicate, 2, "calm-woman", "already exists")
    for bad in (
        ["--name", "Calm Woman"],
        ["--name", "ab"],
        ["--gender", "robot"],
        ["--language", "english please"],
        ["--language-boost", "Yoruba"],
    ):
        args = dict(
            zip(["--name", "--gender", "--language"], ["other-voice", "male", "en-US"], strict=True)
        )
        args.update(dict([bad]))
        result = invoke(
            "add", "--minimax-id", "English_CalmWoman", *[x for pair in args.items() for x in pair]
        )
        one_error(result, 2)
    assert emu.stats()["requests"]["get_voice"] == asked, "mistakes are caught before MiniMax"
    emu.add_fault({"endpoint": "get_voice", "kind": "http", "status": 503, "times": 5})
    down = invoke(
        "add",
        "--name",
        "upbeat-woman",
        "--minimax-id",
        "English_Upbeat_Woman",
        "--language",
        "en-US",
        "--gender",
        "female",
    )
    one_error(down, 3, "MiniMax is unavailable")
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(Voice.__table__.c.name).where(
                    Voice.__table__.c.name.in_(["ghost-voice", "other-voice", "upbeat-woman"])
                )
            ).all()
            == []
        )


# --- list, update, deactivate, activate ----------------------------------------------------


def test_list_filters_and_shows_inactive_only_with_all(invoke: Invoke) -> None:
    everything = ok_json(invoke("list", "--json"))
    assert names(everything) == SEEDED
    first = everything["voices"][0]
    assert first["minimax_voice_id"] and first["used"] is None and first["expires_at"] is None
    assert names(ok_json(invoke("list", "--language", "en-ng", "--json"))) == {
        "nigerian-male",
        "nigerian-female",
    }
    assert names(ok_json(invoke("list", "--gender", "male", "--kind", "system", "--json"))) == {
        "nigerian-male",
        "british-male",
        "american-male",
    }
    assert ok_json(invoke("list", "--kind", "cloned", "--json")) == {"voices": []}
    one_error(invoke("list", "--kind", "designed"), 2, "system", "cloned")
    assert ok_json(invoke("deactivate", "--name", "british-male", "--json")) == {
        "name": "british-male",
        "active": False,
        "changed": True,
    }
    assert "british-male" not in names(ok_json(invoke("list", "--json")))
    listed = ok_json(invoke("list", "--all", "--json"))
    assert {v["name"]: v["active"] for v in listed["voices"]}["british-male"] is False
    human = invoke("list", "--all")
    assert human.exit_code == 0 and "british-male" in human.stdout


def test_update_changes_a_voice_in_place(invoke: Invoke) -> None:
    changed = ok_json(
        invoke(
            "update",
            "--name",
            "nigerian-female",
            "--description",
            "Warm Lagos voice.",
            "--language-boost",
            "",
            "--json",
        )
    )
    assert changed["description"] == "Warm Lagos voice." and changed["language_boost"] is None
    moved = ok_json(
        invoke(
            "update",
            "--name",
            "nigerian-female",
            "--minimax-id",
            "English_Upbeat_Woman",
            "--gender",
            "female",
            "--json",
        )
    )
    assert moved["minimax_voice_id"] == "English_Upbeat_Woman" and moved["kind"] == "system"
    assert moved["description"] == "Warm Lagos voice."
    one_error(
        invoke("update", "--name", "nigerian-female", "--minimax-id", "Nope_Voice"),
        2,
        "MiniMax does not know voice id",
        "Nope_Voice",
    )
    one_error(invoke("update", "--name", "nigerian-female"), 2, "nothing to update")
    one_error(
        invoke("update", "--name", "no-such-voice", "--description", "x"),
        2,
        "no voice named",
        "no-such-voice",
    )
    one_error(invoke("update", "--name", "nigerian-female", "--gender", "robot"), 2, "gender")
    listed = ok_json(invoke("list", "--json"))
    [row] = [v for v in listed["voices"] if v["name"] == "nigerian-female"]
    assert row["minimax_voice_id"] == "English_Upbeat_Woman"


async def test_a_deactivated_voice_is_voice_not_found(
    invoke: Invoke, run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    before = await run_job(api_key=key, action="voices")
    assert "british-female" in {v["name"] for v in before["voices"]}
    off = await asyncio.to_thread(invoke, "deactivate", "--name", "british-female", "--json")
    assert ok_json(off)["changed"] is True
    again = await asyncio.to_thread(invoke, "deactivate", "--name", "british-female", "--json")
    assert ok_json(again) == {"name": "british-female", "active": False, "changed": False}
    await worker.pipeline().voices.reload()  # a worker's cache lapses within 60 s
    out = await run_job(api_key=key, text=TEXT, voice="british-female")
    assert out["error"]["code"] == "voice_not_found"
    assert "british-female" not in out["error"]["voices"]
    listed = await run_job(api_key=key, action="voices")
    assert "british-female" not in {v["name"] for v in listed["voices"]}
    on = await asyncio.to_thread(invoke, "activate", "--name", "british-female", "--json")
    assert ok_json(on)["changed"] is True
    await worker.pipeline().voices.reload()
    listed = await run_job(api_key=key, action="voices")
    assert "british-female" in {v["name"] for v in listed["voices"]}
    missing = await asyncio.to_thread(invoke, "activate", "--name", "no-such-voice")
    one_error(missing, 2, "no voice named")


@backend_independent
async def test_an_alias_lets_openai_s_voice_names_reach_a_voice(
    invoke: Invoke, run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    added = await asyncio.to_thread(
        invoke, "alias", "--name", "alloy", "--voice", "british-female", "--json"
    )
    assert ok_json(added) == {"alias": "alloy", "voice": "british-female", "changed": True}
    out = await run_job(api_key=key, input=TEXT, voice="alloy", response_format="mp3")
    assert out["voice"] == "british-female" and out["audio_base64"]
    moved = await asyncio.to_thread(
        invoke, "alias", "--name", "alloy", "--voice", "british-male", "--json"
    )
    assert ok_json(moved)["voice"] == "british-male"
    listed = ok_json(await asyncio.to_thread(invoke, "alias", "--list", "--json"))
    assert listed == {"aliases": [{"alias": "alloy", "voice": "british-male", "active": True}]}
    clash = await asyncio.to_thread(
        invoke, "alias", "--name", "british-male", "--voice", "british-female"
    )
    one_error(clash, 2, "voice's own name")
    taken = await asyncio.to_thread(
        invoke,
        "add",
        "--name",
        "alloy",
        "--minimax-id",
        "English_Graceful_Lady",
        "--language",
        "en-GB",
        "--gender",
        "female",
    )
    one_error(taken, 2, "is an alias")
    one_error(await asyncio.to_thread(invoke, "alias", "--name", "nova"), 2, "--voice")
    gone = await asyncio.to_thread(invoke, "alias", "--name", "alloy", "--remove", "--json")
    assert ok_json(gone) == {"alias": "alloy", "removed": True}
    await worker.pipeline().voices.reload()
    out = await run_job(api_key=key, input=TEXT, voice="alloy")
    assert out["error"]["code"] == "voice_not_found"


# --- sync ----------------------------------------------------------------------------------


def test_sync_lists_imports_and_deactivates_and_is_safe_twice(
    invoke: Invoke, engine: Engine
) -> None:
    with engine.begin() as conn:  # a voice MiniMax has since retired
        conn.execute(
            cast(Table, Voice.__table__)
            .insert()
            .values(
                name="retired-voice",
                minimax_voice_id="English_Retired_Voice",
                language="en-US",
                gender="male",
                kind="system",
                active=True,
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    report = ok_json(invoke("sync", "--match", "english_", "--json"))
    new = {v["minimax_voice_id"] for v in report["new"]}
    assert "English_CalmWoman" in new and "English_Graceful_Lady" not in new
    assert all(i.startswith("English_") for i in new)
    assert report["missing"] == [
        {"name": "retired-voice", "minimax_voice_id": "English_Retired_Voice"}
    ]
    assert report["deactivated"] == []
    spec = "English_CalmWoman=calm-woman:en-US:female"
    first = ok_json(invoke("sync", "--import", spec, "--deactivate-missing", "--json"))
    assert first["imported"] == ["calm-woman"] and first["deactivated"] == ["retired-voice"]
    assert "English_CalmWoman" not in {v["minimax_voice_id"] for v in first["new"]}
    second = ok_json(invoke("sync", "--import", spec, "--deactivate-missing", "--json"))
    assert second["imported"] == [] and second["unchanged"] == ["calm-woman"]
    assert second["missing"] == [] and second["deactivated"] == []
    listed = names(ok_json(invoke("list", "--json")))
    assert "calm-woman" in listed and "retired-voice" not in listed
    human = invoke("sync", "--match", "English_")
    assert human.exit_code == 0 and "English_Upbeat_Woman" in human.stdout


def test_sync_refuses_bad_imports_and_changes_nothing(invoke: Invoke, engine: Engine) -> None:
    one_error(
        invoke("sync", "--import", "English_Upbeat_Woman=upbeat:en-US"),
        2,
        "ID=NAME:LANGUAGE:GENDER",
    )
    one_error(
        invoke(
            "sync",
            "--import",
            "English_Upbeat_Woman=upbeat-woman:en-US:female",
            "--import",
            "No_Such_Voice=ghost-voice:en-US:male",
        ),
        2,
        "No_Such_Voice",
    )
    one_error(
        invoke("sync", "--import", "English_Upbeat_Woman=british-male:en-GB:male"),
        2,
        "british-male",
        "already exists",
    )
    with engine.connect() as conn:
        assert len(conn.execute(select(Voice.__table__.c.id)).all()) == len(SEEDED)


# --- clone ---------------------------------------------------------------------------------


def clone_args(sample: Path, name: str = "nigerian-female-ada", *extra: str) -> list[str]:
    return [
        "clone",
        "--name",
        name,
        "--file",
        str(sample),
        "--language",
        "en-NG",
        "--gender",
        "female",
        *extra,
    ]


async def test_a_clone_speaks_and_then_stops_expiring(
    invoke: Invoke,
    run_job: JobRunner,
    make_user: UserFactory,
    engine: Engine,
    worker: Worker,
    tmp_path: Path,
    emu: Emulator,
) -> None:
    sample = write_wav(tmp_path / "ada.wav", 12)
    made = ok_json(
        await asyncio.to_thread(
            invoke,
            *clone_args(
                sample,
                "nigerian-female-ada",
                "--description",
                "Ada, from Lagos.",
                "--preview-text",
                "Hello from Lagos.",
                "--json",
            ),
        )
    )
    voice_id = made["minimax_voice_id"]
    assert voice_id.startswith("odea-nigerian-female-ada-")
    assert made["kind"] == "cloned" and made["language_boost"] == "English"
    assert isinstance(made["minimax_file_id"], int) and made["demo_audio"]
    assert "7 days" in made["reminder"] and made["note"] is None
    # What MiniMax billed for the preview is kept for the usage report.
    assert made["preview_characters"] == emu.stats()["characters"] > 0
    [row] = cloned_rows(engine)
    assert (row.preview_characters, row.preview_model) == (
        made["preview_characters"],
        worker.settings.minimax_model,
    )
    fresh = ok_json(await asyncio.to_thread(invoke, "list", "--kind", "cloned", "--json"))
    [row] = fresh["voices"]
    assert row["used"] is False and row["days_left"] == 6 and row["expiring"] is False
    # MiniMax lists a clone only once used, so the stand-in cannot point at it yet.
    early = await asyncio.to_thread(
        invoke, "update", "--name", "nigerian-female", "--minimax-id", voice_id
    )
    one_error(early, 2, "MiniMax does not know voice id", "nigerian-female-ada")

    backdate(engine, "nigerian-female-ada", days=5.5)
    expiring = ok_json(await asyncio.to_thread(invoke, "list", "--expiring", "--json"))
    assert names(expiring) == {"nigerian-female-ada"}
    assert expiring["voices"][0]["days_left"] == 1
    human = await asyncio.to_thread(invoke, "list", "--expiring")
    assert "EXPIRING" in human.stdout and "nigerian-female-ada" in human.stdout

    _, key = await make_user()
    out = await run_job(api_key=key, text=TEXT, voice="nigerian-female-ada")
    assert "error" not in out, out
    assert out["voice"] == "nigerian-female-ada" and out["duration_seconds"] > 0
    assert ok_json(await asyncio.to_thread(invoke, "list", "--expiring", "--json")) == {
        "voices": []
    }
    after = ok_json(await asyncio.to_thread(invoke, "list", "--kind", "cloned", "--json"))
    assert after["voices"][0]["used"] is True and after["voices"][0]["expires_at"] is None

    # Now MiniMax lists it: the stand-in takes the clone and callers keep their voice name.
    swapped = ok_json(
        await asyncio.to_thread(
            invoke, "update", "--name", "nigerian-female", "--minimax-id", voice_id, "--json"
        )
    )
    assert swapped["kind"] == "cloned"
    assert swapped["minimax_file_id"] == made["minimax_file_id"]
    off = await asyncio.to_thread(invoke, "deactivate", "--name", "nigerian-female-ada")
    assert off.exit_code == 0, off.stderr
    await worker.pipeline().voices.reload()  # a worker's cache lapses within 60 s
    out = await run_job(api_key=key, text=TEXT, voice="nigerian-female")
    assert "error" not in out, out
    cloned = ok_json(await asyncio.to_thread(invoke, "list", "--kind", "cloned", "--json"))
    assert [(v["name"], v["used"]) for v in cloned["voices"]] == [("nigerian-female", True)]


def _taken_at_minimax(emu: Emulator, sample: Path) -> str:
    """A voice id MiniMax already used (ids are unique forever), unknown to our catalogue."""
    upload = emu.state.voices.add_file(sample.read_bytes(), sample.name, "voice_clone", 12.0)
    emu.state.voices.add_clone("odea-already-taken", upload)
    return "odea-already-taken"


@backend_independent
def test_clone_refuses_mistakes_before_uploading(
    invoke: Invoke, emu: Emulator, engine: Engine, tmp_path: Path
) -> None:
    sample = write_wav(tmp_path / "ada.wav", 12)
    mistakes = {
        "missing file": (clone_args(tmp_path / "nowhere.wav"), ("no such file",)),
        "wrong extension": (
            clone_args(write_wav(tmp_path / "ada.ogg", 12)),
            (".mp3, .m4a or .wav",),
        ),
        "empty file": (clone_args(tmp_path / "empty.mp3"), ("empty",)),
        "bad voice id": (
            clone_args(sample, "ada-one", "--voice-id", "9-starts-with-digit"),
            ("voice id", "start with a letter"),
        ),
        "model alone": (
            clone_args(sample, "ada-one", "--model", "speech-02-hd"),
            ("--preview-text",),
        ),
        "name taken": (clone_args(sample, "british-male"), ("british-male", "already exists")),
        "bad gender": (clone_args(sample, "ada-one", "--gender", "robot"), ("gender",)),
    }
    (tmp_path / "empty.mp3").write_bytes(b"")
    for case, (args, words) in mistakes.items():
        assert one_error(invoke(*args), 2, *words), case
    assert emu.stats()["requests"]["files/upload"] == 0, "refused before any upload"
    assert cloned_rows(engine) == []

    first = ok_json(
        invoke(*clone_args(sample, "ada-one", "--voice-id", "odea-ada-one-x", "--json"))
    )
    assert first["minimax_voice_id"] == "odea-ada-one-x"
    one_error(
        invoke(*clone_args(sample, "ada-two", "--voice-id", "odea-ada-one-x")),
        2,
        "odea-ada-one-x",
        "ada-one",
    )
    assert emu.stats()["requests"]["files/upload"] == 1
    # Never used and past MiniMax's 7 days: it is gone there, and the list says so.
    backdate(engine, "ada-one", days=8)
    [row] = ok_json(invoke("list", "--expiring", "--json"))["voices"]
    assert row["name"] == "ada-one" and row["days_left"] < 0 and row["expiring"] is True
    assert "DELETED" in invoke("list", "--expiring").stdout


def _fault(rule: dict[str, Any]) -> Callable[[Emulator, Path], str | None]:
    def inject(emu: Emulator, _: Path) -> None:
        emu.add_fault(rule)

    return inject


CLONE_FAILURES: dict[
    str, tuple[Callable[[Emulator, Path], str | None], float, int, tuple[str, ...]]
] = {
    # case: (prepare -> --voice-id or None, sample seconds, exit code, words in the error)
    "too short": (lambda emu, d: None, 5, 2, ("10 seconds to 5 minutes", "2037")),
    "upload rejected": (
        _fault({"endpoint": "files/upload", "kind": "base_resp", "code": 20132}),
        12,
        2,
        ("upload", "invalid", "20132"),
    ),
    "voice id taken": (
        _taken_at_minimax,
        12,
        2,
        ("already used", "2039", "not list", "without --voice-id"),
    ),
    "account not verified": (
        _fault({"endpoint": "voice_clone", "kind": "base_resp", "code": 2038}),
        12,
        2,
        ("verified", "2038"),
    ),
    "validation failed": (
        _fault({"endpoint": "voice_clone", "kind": "base_resp", "code": 1044}),
        12,
        2,
        ("validation failed", "1044"),
    ),
    "prompt too long": (
        _fault({"endpoint": "voice_clone", "kind": "base_resp", "code": 2048}),
        12,
        2,
        ("8 seconds", "2048"),
    ),
    "minimax down": (
        _fault({"endpoint": "files/upload", "kind": "http", "status": 503, "times": 5}),
        12,
        3,
        ("MiniMax is unavailable",),
    ),
    "account refused": (
        _fault({"endpoint": "voice_clone", "kind": "base_resp", "code": 1008}),
        12,
        3,
        ("MINIMAX_API_KEY",),
    ),
    "plan refused": (
        _fault({"endpoint": "voice_clone", "kind": "base_resp", "code": 2061}),
        12,
        3,
        ("MINIMAX_API_KEY", "plan"),
    ),
    "flagged sample": (
        _fault({"endpoint": "voice_clone", "kind": "sensitive", "type": 3}),
        12,
        2,
        ("flagged", "sensitive", "type 3", "not registered"),
    ),
    "flagged sample, object": (
        _fault({"endpoint": "voice_clone", "kind": "sensitive", "type": 6, "shape": "object"}),
        12,
        2,
        ("flagged", "type 6"),
    ),
}


@backend_independent
def test_a_clone_minimax_refuses_says_why_and_stores_nothing(
    invoke: Invoke, emu: Emulator, engine: Engine, tmp_path: Path
) -> None:
    for case, (prepare, seconds, code, words) in CLONE_FAILURES.items():
        emu.reset()
        sample = write_wav(tmp_path / f"{seconds}s.wav", seconds)
        voice_id = prepare(emu, sample)
        extra = ["--voice-id", voice_id] if voice_id else []
        result = invoke(*clone_args(sample, "nigerian-female-ada", *extra))
        assert result.exit_code == code, (case, result.stderr)
        assert one_error(result, code, *words), case
        assert cloned_rows(engine) == [], case


# --- a clone whose reply is lost ----------------------------------------------------------


def clone_requests(emu: Emulator) -> int:
    return int(emu.stats()["requests"].get("voice_clone", 0))


LOST = {
    "disconnect": {"then": "disconnect"},
    "5xx": {"then": "http", "status": 503},
    "1000": {"then": "base_resp", "code": 1000},
}


@backend_independent
@pytest.mark.parametrize("lost", LOST.values(), ids=LOST.keys())
def test_a_lost_clone_reply_is_not_retried_and_says_the_state_is_unknown(
    invoke: Invoke, emu: Emulator, engine: Engine, tmp_path: Path, lost: dict[str, Any]
) -> None:
    sample = write_wav(tmp_path / "ada.wav", 12)
    emu.add_fault({"endpoint": "voice_clone", "kind": "clone_lost", **lost})
    args = clone_args(
        sample, "ada-lost", "--voice-id", "odea-ada-lost-1", "--preview-text", "Hello from Lagos."
    )
    first = invoke(*args)
    one_error(
        first,
        3,
        "clone state unknown",
        "odea-ada-lost-1",
        "first synthesis",
        "Nothing was registered",
        "--voice-id odea-ada-lost-1",
    )
    assert clone_requests(emu) == 1, "voice_clone is never retried blindly"
    billed = emu.stats()["characters"]
    assert billed > 0 and cloned_rows(engine) == []
    # The operator runs it again, as told: MiniMax made the clone, so the id is in use.
    again = invoke(*args)
    one_error(again, 2, "already used", "2039", "clone state unknown", "without --voice-id")
    assert clone_requests(emu) == 2
    assert emu.stats()["characters"] == billed, "the preview is never billed twice"
    assert cloned_rows(engine) == []


@backend_independent
def test_a_lost_reply_and_no_get_voice_is_still_unknown_not_failed(
    invoke: Invoke, emu: Emulator, engine: Engine, tmp_path: Path
) -> None:
    emu.add_fault({"endpoint": "voice_clone", "kind": "clone_lost"})
    emu.add_fault({"endpoint": "get_voice", "kind": "http", "status": 503, "times": 5})
    result = invoke(
        *clone_args(
            write_wav(tmp_path / "ada.wav", 12), "ada-dark", "--voice-id", "odea-ada-dark-1"
        )
    )
    one_error(result, 3, "clone state unknown", "could not be asked", "odea-ada-dark-1")
    assert clone_requests(emu) == 1 and cloned_rows(engine) == []


def test_a_clone_minimax_lists_after_a_lost_reply_is_registered(
    invoke: Invoke, emu: Emulator, engine: Engine, tmp_path: Path
) -> None:
    sample = write_wav(tmp_path / "ada.wav", 12)
    emu.add_fault({"endpoint": "voice_clone", "kind": "clone_lost", "then": "http", "status": 502})
    listed = {
        "voice_cloning": [
            {"voice_id": "odea-ada-kept-1", "description": [], "created_time": "2026-12-01"}
        ],
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }
    emu.add_fault({"endpoint": "get_voice", "kind": "reply", "body": listed})
    made = ok_json(
        invoke(*clone_args(sample, "ada-kept", "--voice-id", "odea-ada-kept-1", "--json"))
    )
    assert made["minimax_voice_id"] == "odea-ada-kept-1" and made["kind"] == "cloned"
    assert "reply to voice_clone was lost" in made["note"] and "registered" in made["note"]
    assert clone_requests(emu) == 1
    [row] = cloned_rows(engine)
    assert row.name == "ada-kept" and row.minimax_file_id == made["minimax_file_id"]


async def test_a_2039_for_our_clone_from_a_lost_attempt_registers_it(
    invoke: Invoke,
    emu: Emulator,
    engine: Engine,
    tmp_path: Path,
    run_job: JobRunner,
    make_user: UserFactory,
) -> None:
    sample = write_wav(tmp_path / "ada.wav", 12)
    voice_id = _taken_at_minimax(emu, sample)  # an earlier attempt made it, reply lost,
    emu.state.voices.mark_used(voice_id)  # and it has been used since: MiniMax lists it
    result = await asyncio.to_thread(
        invoke, *clone_args(sample, "ada-found", "--voice-id", voice_id)
    )
    assert result.exit_code == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert "2039" in flat and "lists it as our clone" in flat and "registered" in flat
    [row] = cloned_rows(engine)
    assert (row.name, row.minimax_voice_id, row.minimax_file_id) == ("ada-found", voice_id, None)
    _, key = await make_user()
    out = await run_job(api_key=key, text=TEXT, voice="ada-found")
    assert "error" not in out, out


# --- what only the real command line shows -------------------------------------------------


@pytest.mark.parametrize("backend", ["embedded"])
def test_a_refused_clone_prints_one_line_from_the_real_script(
    settings: Settings, emu: Emulator, tmp_path: Path
) -> None:
    emu.add_fault({"endpoint": "voice_clone", "kind": "base_resp", "code": 2038})
    env = {
        **cli_env(settings),
        "MINIMAX_BASE_URL": emu.url,
        "MINIMAX_API_KEY": EMULATOR_KEY,
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/admin.py",
            "voices",
            *clone_args(write_wav(tmp_path / "ada.wav", 12)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "2038" in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
