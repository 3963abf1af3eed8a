"""The job path end to end: a RunPod job in, MP3 out, metered — on both backends."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from mutagen.mp3 import MP3
from sqlalchemy import select, update

from minimax_emulator import Emulator
from odeatts.models import ApiKey, Usage, User, utcnow
from odeatts.schemas import JOB_ID
from odeatts.worker import LOCAL_TEST_ID, Worker, local_job
from tests.conftest import JobRunner, UserFactory, backend_independent

TEXT = "Good morning, Lagos. The market opens at nine."


def mp3_seconds(output: dict[str, Any]) -> float:
    audio = base64.b64decode(output["audio_base64"])
    return float(MP3(io.BytesIO(audio)).info.length)


async def usage_rows(worker: Worker) -> list[Usage]:
    async with worker.pipeline().sessions() as session:
        return list((await session.execute(select(Usage).order_by(Usage.id))).scalars())


async def test_valid_job_returns_mp3_and_charges_its_real_duration(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    out = await run_job(
        "job-1",
        api_key=key,
        text=TEXT,
        voice="nigerian-female",
        speed=1.0,
        pitch=0,
        emotion="happy",
        model="speech-02-turbo",
    )
    assert "error" not in out, out
    assert out["format"] == "mp3" and out["voice"] == "nigerian-female"
    assert out["request_id"] == "job-1" and out["characters"] == len(TEXT)
    assert out["sample_rate"] == 32000
    assert out["duration_seconds"] > 1.0
    assert mp3_seconds(out) == pytest.approx(out["duration_seconds"], rel=0.05, abs=0.1)
    assert out["quota"]["used_seconds"] == pytest.approx(out["duration_seconds"], abs=0.001)
    assert out["quota"]["remaining_seconds"] == pytest.approx(
        600 - out["duration_seconds"], abs=0.001
    )
    [row] = await usage_rows(worker)
    assert (row.job_id, row.status, row.voice) == ("job-1", "succeeded", "nigerian-female")
    assert row.duration_ms == round(out["duration_seconds"] * 1000)
    assert row.billed_characters == len(TEXT) and row.trace_id


@backend_independent
async def test_voice_settings_reach_minimax(run_job: JobRunner, make_user: UserFactory) -> None:
    _, key = await make_user()
    slow = await run_job(api_key=key, text=TEXT, voice="british-male", speed=0.5)
    fast = await run_job(api_key=key, text=TEXT, voice="british-male", speed=2.0)
    assert slow["duration_seconds"] > 2 * fast["duration_seconds"]


@pytest.mark.parametrize("api_key", ["", "not-a-key", "odea_AAAAAAAA_" + "B" * 32])
async def test_bad_keys_are_unauthorized(run_job: JobRunner, api_key: str, worker: Worker) -> None:
    out = await run_job(api_key=api_key, text=TEXT, voice="british-male")
    assert out["error"]["code"] == "unauthorized" and out["error"]["status"] == 401
    assert await usage_rows(worker) == []


@backend_independent
async def test_missing_key_is_unauthorized(run_job: JobRunner) -> None:
    out = await run_job(text=TEXT, voice="british-male")
    assert out["error"]["code"] == "unauthorized"


async def test_revoked_key_and_inactive_user_are_unauthorized(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    assert "error" not in await run_job(api_key=key, text="Hello.", voice="british-male")
    async with worker.pipeline().sessions() as session, session.begin():
        await session.execute(update(ApiKey).values(revoked_at=utcnow()))
    assert (await run_job(api_key=key, text="Hello.", voice="british-male"))["error"][
        "code"
    ] == "unauthorized"
    other_id, other_key = await make_user()
    async with worker.pipeline().sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == other_id).values(active=False))
    assert (await run_job(api_key=other_key, text="Hello.", voice="british-male"))["error"][
        "code"
    ] == "unauthorized"


@backend_independent
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 50_001}, "text"),
        ({"speed": 2.5}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"pitch": 13}, "pitch"),
        ({"volume": 0}, "volume"),
        ({"emotion": "ecstatic"}, "emotion"),
        ({"model": "speech-99"}, "model"),
        ({"sample_rate": 12345}, "sample_rate"),
        ({"format": "ogg"}, "format"),
        ({"sped": 1.0}, "sped"),
        ({"action": "dance"}, "action"),
    ],
)
async def test_invalid_requests_name_the_field(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, fields: dict[str, Any], field: str
) -> None:
    _, key = await make_user()
    job = {"api_key": key, "text": TEXT, "voice": "british-male", **fields}
    out = await run_job(**job)
    assert out["error"]["code"] == "invalid_request"
    assert out["error"]["field"] == field and out["error"]["status"] == 400
    assert await usage_rows(worker) == []


@backend_independent
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"emotion": "whisper"}, "emotion"),  # the default model lacks it
        ({"emotion": "fluent", "model": "speech-02-hd"}, "emotion"),
        ({"language_boost": "Yoruba"}, "language_boost"),
    ],
)
async def test_what_minimax_would_refuse_is_refused_before_anything_is_reserved(
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    emu: Emulator,
    fields: dict[str, Any],
    field: str,
) -> None:
    assert worker.settings.minimax_model == "speech-02-turbo"
    _, key = await make_user()
    out = await run_job(api_key=key, text=TEXT, voice="british-male", **fields)
    assert (out["error"]["code"], out["error"]["field"]) == ("invalid_request", field)
    assert await usage_rows(worker) == []
    assert emu.stats()["requests"].get("t2a_v2", 0) == 0
    ok = await run_job(
        api_key=key, text=TEXT, voice="british-male", emotion="whisper", model="speech-2.6-turbo"
    )
    assert "error" not in ok, ok


@backend_independent
async def test_missing_text_and_voice(run_job: JobRunner, make_user: UserFactory) -> None:
    _, key = await make_user()
    assert (await run_job(api_key=key, voice="british-male"))["error"]["field"] == "text"
    assert (await run_job(api_key=key, text=TEXT))["error"]["field"] == "voice"


@backend_independent
async def test_input_that_is_not_an_object(worker: Worker) -> None:
    import json

    result = await worker.handle({"id": "j", "input": "say hello"})
    assert json.loads(result["error"])["code"] == "invalid_request"


@backend_independent
async def test_unknown_voice_lists_the_valid_names(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    out = await run_job(api_key=key, text=TEXT, voice="klingon-male")
    assert out["error"]["code"] == "voice_not_found"
    assert "nigerian-male" in out["error"]["voices"]
    assert "american-female" in out["error"]["voices"]
    assert await usage_rows(worker) == []


@backend_independent
async def test_unknown_voice_with_bad_key_is_unauthorized_first(run_job: JobRunner) -> None:
    out = await run_job(api_key="odea_AAAAAAAA_" + "B" * 32, text=TEXT, voice="klingon")
    assert out["error"]["code"] == "unauthorized"
    assert "voices" not in out["error"]


@backend_independent
async def test_no_secret_or_traceback_in_any_output(
    run_job: JobRunner, make_user: UserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = await make_user()
    outputs = [
        await run_job(api_key=key, text=TEXT, voice="british-male"),
        await run_job(api_key=key, text=TEXT, voice="nope"),
        await run_job(api_key=key + "x", text=TEXT, voice="british-male"),
    ]
    text = repr(outputs) + caplog.text
    assert key not in text and "emulator-key" not in text
    assert "Traceback" not in repr(outputs)


# --- python handler.py --test_input: repeatable outside production ---------------------------


def test_a_local_test_id_is_made_unique_outside_production_only() -> None:
    job = {"id": LOCAL_TEST_ID, "input": {"text": "hi"}}
    first, second = (local_job(job, production=False)["id"] for _ in range(2))
    assert first != second and first.startswith(f"{LOCAL_TEST_ID}-")
    assert JOB_ID.fullmatch(first)
    assert local_job(job, production=True) == job  # production ids are RunPod's
    assert local_job({"id": "abc", "input": {}}, production=False)["id"] == "abc"


@backend_independent
async def test_the_sdks_local_test_job_can_run_again(
    worker: Worker, make_user: UserFactory
) -> None:
    """`python handler.py --test_input ...` gives every run the id local_test: the
    second run must speak again, not answer duplicate_job."""
    _, key = await make_user()
    job = {"id": LOCAL_TEST_ID, "input": {"api_key": key, "text": TEXT, "voice": "british-male"}}
    first, second = await worker.handle(job), await worker.handle(job)
    assert "error" not in first and "error" not in second, (first, second)
    assert first["request_id"] != second["request_id"]
    assert sorted(r.job_id for r in await usage_rows(worker)) == sorted(
        [first["request_id"], second["request_id"]]
    )
