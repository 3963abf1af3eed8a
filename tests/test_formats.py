"""Output formats other than MP3: WAV and PCM come back valid, also when a long text
is joined from parts."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Callable

import pytest

from odeatts.config import Settings
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, backend_independent

SENTENCE = "Lagos wakes early, and the ferries leave on time. "


def wav_seconds(audio: bytes) -> float:
    with wave.open(io.BytesIO(audio), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


@backend_independent
async def test_wav_is_a_valid_file_of_the_reported_length(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user()
    out = await run_job(
        api_key=key, text=SENTENCE, voice="british-female", format="wav", sample_rate=16000
    )
    audio = base64.b64decode(out["audio_base64"])
    assert out["format"] == "wav" and audio[:4] == b"RIFF"
    assert wav_seconds(audio) == pytest.approx(out["duration_seconds"], rel=0.02)


@backend_independent
async def test_pcm_is_raw_sixteen_bit_of_the_reported_length(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user()
    out = await run_job(
        api_key=key, text=SENTENCE, voice="british-female", format="pcm", sample_rate=24000
    )
    audio = base64.b64decode(out["audio_base64"])
    assert len(audio) / 2 / 24000 == pytest.approx(out["duration_seconds"], rel=0.02)


@backend_independent
async def test_a_long_wav_is_joined_into_one_file(
    make_settings: Callable[..., Settings], make_user: UserFactory
) -> None:
    worker = Worker(make_settings(ODEATTS_PART_CHARS=200))
    try:
        created = await make_user("pro")
        result = await worker.handle(
            {
                "id": "wav-long",
                "input": {
                    "api_key": created[1],
                    "text": SENTENCE * 8,
                    "voice": "american-male",
                    "format": "wav",
                    "sample_rate": 16000,
                },
            }
        )
    finally:
        await worker.aclose()
    audio = base64.b64decode(result["audio_base64"])
    assert audio.count(b"RIFF") == 1  # one header, not one per part
    assert wav_seconds(audio) == pytest.approx(result["duration_seconds"], rel=0.02)
