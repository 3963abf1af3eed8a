"""Issue 12 end to end, through the worker and the emulator over HTTP: telephony audio,
word timings (also across the parts of a long text, and in a stream's final item),
OpenAI's request shape. Metering is the plain path's, so one backend suffices, except
for the last test, which checks the charge itself on both."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from minimax_emulator import Emulator
from minimax_emulator.textinfo import usage_characters
from odeatts import g711
from odeatts.config import Settings
from odeatts.errors import UpstreamUnavailable
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, backend_independent

TEXT = "Good morning, Lagos. The market opens at nine. Bring your own bags."
SENTENCE = "The quick brown fox jumps over the lazy dog near the riverbank. "


def audio_of(out: dict[str, Any]) -> bytes:
    assert "error" not in out, out
    return base64.b64decode(out["audio_base64"])


async def charged(worker: Worker) -> tuple[int, list[Usage]]:
    async with worker.pipeline().sessions() as session:
        used = (await session.execute(select(User.used_ms))).scalar_one()
        rows = list((await session.execute(select(Usage))).scalars())
    return used, rows


def in_order(timings: list[dict[str, Any]], duration: float) -> None:
    assert timings and timings[0]["start_seconds"] == 0
    for before, after in itertools.pairwise(timings):
        assert before["start_seconds"] <= before["end_seconds"] <= after["start_seconds"]
    assert timings[-1]["end_seconds"] == pytest.approx(duration, abs=0.05)


@backend_independent
async def test_mu_law_is_8000_hz_a_byte_a_sample_and_charged_as_it_measures(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    raw = await run_job(api_key=key, text=TEXT, voice="british-female", format="ulaw")
    wav = await run_job(api_key=key, text=TEXT, voice="british-female", format="ulaw_wav")
    assert (raw["format"], raw["sample_rate"]) == ("ulaw", 8000)
    assert len(audio_of(raw)) / 8000 == pytest.approx(raw["duration_seconds"], abs=0.002)
    info = g711.read_wav(audio_of(wav))
    assert (info.format_tag, info.sample_rate, info.bits) == (g711.MULAW, 8000, 8)
    assert len(info.data) / 8000 == pytest.approx(wav["duration_seconds"], abs=0.002)
    used, _ = await charged(worker)
    assert used == round((raw["duration_seconds"] + wav["duration_seconds"]) * 1000)


@backend_independent
async def test_timings_of_a_long_text_line_up_with_the_joined_audio(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    worker = Worker(make_settings(ODEATTS_PART_CHARS=300))
    try:
        _, key = await make_user("pro")
        out = await worker.handle(
            {
                "id": "ts-long",
                "input": {
                    "api_key": key,
                    "text": SENTENCE * 12,
                    "voice": "british-female",
                    "format": "pcm",
                    "timestamps": True,
                },
            }
        )
    finally:
        await worker.aclose()
    assert emu.stats()["requests"]["t2a_v2"] >= 3
    timings = out["timestamps"]
    assert [t["text"] for t in timings] == [SENTENCE.strip()] * 12
    # Each part starts where the audio before it ends: the last sentence ends with the
    # joined audio, which is the sum of the parts (PCM: to the sample).
    in_order(timings, out["duration_seconds"])


@backend_independent
async def test_a_stream_s_final_item_carries_its_timings(
    make_settings: Callable[..., Settings], make_user: UserFactory
) -> None:
    worker = Worker(make_settings(ODEATTS_HANDLER="stream"))
    try:
        _, key = await make_user()
        job = {"api_key": key, "text": TEXT, "voice": "british-male", "stream": True}
        items = [
            item
            async for item in worker.handler(
                {"id": "ts-stream", "input": {**job, "timestamps": True, "format": "ulaw"}}
            )
        ]
    finally:
        await worker.aclose()
    final = items[-1]
    assert final["done"] is True and final["format"] == "ulaw"
    audio = b"".join(base64.b64decode(i["audio_base64"]) for i in items[:-1])
    assert len(audio) / 8000 == pytest.approx(final["duration_seconds"], abs=0.002)
    assert [t["text"] for t in final["timestamps"]] == [
        "Good morning, Lagos.",
        "The market opens at nine.",
        "Bring your own bags.",
    ]
    in_order(final["timestamps"], final["duration_seconds"])


@backend_independent
async def test_timings_that_cannot_be_had_fail_the_job_and_charge_nothing(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = await make_user()
    await run_job(api_key=key, text="Warm up.", voice="british-male")  # builds the pipeline

    async def broken(url: str, *, request_id: str) -> list[Any]:
        raise UpstreamUnavailable()

    monkeypatch.setattr(worker.pipeline().subtitles, "fetch", broken)
    out = await run_job("ts-broken", api_key=key, text=TEXT, voice="british-male", timestamps=True)
    assert out["error"]["code"] == "upstream_unavailable"
    used, rows = await charged(worker)
    failed = [r for r in rows if r.job_id == "ts-broken"]
    assert [(r.status, r.duration_ms) for r in failed] == [("failed", None)]
    assert used == rows[0].duration_ms  # the warm-up job only


@backend_independent
async def test_openai_s_request_shape_runs_as_a_speech_job(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user()
    out = await run_job(
        api_key=key,
        input=TEXT,
        voice="british-female",
        response_format="wav",
        speed=1.0,
        model="tts-1-hd",
    )
    assert audio_of(out)[:4] == b"RIFF" and out["format"] == "wav"
    mixed = await run_job(api_key=key, input=TEXT, voice="british-female", text=TEXT)
    assert (mixed["error"]["code"], mixed["error"]["field"]) == ("invalid_request", "text")


@backend_independent
async def test_normalization_and_effects_pass_minimax_s_checks(
    run_job: JobRunner, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user()
    out = await run_job(
        api_key=key,
        text="It costs $12.50 on 1/12.",
        voice="british-female",
        normalize=True,
        effects={"pitch": -30, "sound_effect": "lofi_telephone"},
    )
    # The emulator refuses (2013) what MiniMax's reference does not allow where it was sent.
    assert audio_of(out) and out["format"] == "mp3"


async def test_the_new_options_leave_the_charge_as_measured_and_record_minimax_s_bill(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    """Issue 12's options change what MiniMax is asked, never the price rule: the charge is
    the audio's real duration and the row keeps what MiniMax billed (both backends: the
    charge is written by the backend's own reserve and settle)."""
    _, key = await make_user()
    plain = await run_job(api_key=key, text=TEXT, voice="british-female")
    rich = await run_job(
        api_key=key,
        text=TEXT,
        voice="british-female",
        timestamps=True,
        normalize=True,
        effects={"pitch": 10, "timbre": -5},
        pronunciations={"Lagos": "lay-goss"},
    )
    telephone = await run_job(api_key=key, text=TEXT, voice="british-female", format="ulaw")
    used, rows = await charged(worker)
    outputs = (plain, rich, telephone)
    assert [r.status for r in rows] == ["succeeded"] * 3
    assert [r.duration_ms for r in rows] == [round(o["duration_seconds"] * 1000) for o in outputs]
    assert used == sum(r.duration_ms or 0 for r in rows)
    assert [r.billed_characters for r in rows] == [usage_characters(TEXT)] * 3
