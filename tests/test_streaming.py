"""stream: true — audio chunks as MiniMax streams them, then the metadata; metering
identical to the plain path; a broken stream charges nothing; a stream the caller
stops is charged for what it delivered."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mutagen.mp3 import MP3
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, backend_independent

TEXT = (
    "Voice bots need the first audio fast. This sentence streams in pieces, "
    "and so does this one. The end arrives last."
)


@pytest.fixture
async def streamer(make_settings: Callable[..., Settings]) -> AsyncIterator[Worker]:
    worker = Worker(make_settings(ODEATTS_HANDLER="stream", ODEATTS_STREAM_CHUNK_BYTES=4096))
    yield worker
    await worker.aclose()


async def collect(worker: Worker, job_id: str, **job_input: Any) -> list[dict[str, Any]]:
    return [item async for item in worker.handler({"id": job_id, "input": job_input})]


async def charged(worker: Worker) -> tuple[int, Usage]:
    async with worker.pipeline().sessions() as session:
        used = (await session.execute(select(User.used_ms))).scalar_one()
        row = (await session.execute(select(Usage))).scalar_one()
    return used, row


async def test_a_stream_yields_chunks_that_join_into_the_reported_audio(
    streamer: Worker, make_user: UserFactory
) -> None:
    _, key = await make_user()
    items = await collect(
        streamer, "s-1", api_key=key, text=TEXT, voice="british-female", stream=True
    )
    *chunks, final = items
    assert len(chunks) >= 3 and [c["chunk"] for c in chunks] == list(range(len(chunks)))
    pieces = [base64.b64decode(c["audio_base64"]) for c in chunks]
    assert all(len(p) <= 4096 for p in pieces)
    audio = b"".join(pieces)
    assert final["done"] is True and final["chunks"] == len(chunks)
    assert MP3(io.BytesIO(audio)).info.length == pytest.approx(
        final["duration_seconds"], rel=0.03, abs=0.06
    )
    used, row = await charged(streamer)
    assert used == round(final["duration_seconds"] * 1000) == row.duration_ms
    assert final["quota"]["used_seconds"] == used / 1000
    assert row.status == "succeeded" and row.error_code is None


@backend_independent
async def test_a_non_streamed_job_on_the_stream_endpoint_is_one_item(
    streamer: Worker, make_user: UserFactory
) -> None:
    _, key = await make_user()
    [item] = await collect(streamer, "s-2", api_key=key, text="Just once.", voice="british-male")
    assert item["audio_base64"] and item["duration_seconds"] > 0


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "stream_break", "after_chunks": 2},
        {"kind": "stream_error", "after_chunks": 2, "code": 1000},
    ],
)
async def test_a_broken_stream_ends_in_a_clean_error_and_charges_nothing(
    streamer: Worker, make_user: UserFactory, emu: Emulator, fault: dict[str, Any]
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "times": 0, **fault})
    items = await collect(
        streamer, "s-3", api_key=key, text=TEXT, voice="british-female", stream=True
    )
    error = json.loads(items[-1]["error"])
    assert error["code"] == "upstream_unavailable"
    assert error["delivered_chunks"] == len(items) - 1 >= 1
    assert error["charged_seconds"] == 0
    assert "Traceback" not in items[-1]["error"]
    used, row = await charged(streamer)
    assert used == 0 and (row.status, row.error_code) == ("failed", "upstream_unavailable")
    assert emu.stats()["requests"]["t2a_v2"] == 1  # not retried once audio was out


async def test_an_error_before_the_stream_starts_is_retried(
    streamer: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": 1002, "times": 1})
    items = await collect(
        streamer, "s-4", api_key=key, text=TEXT, voice="british-female", stream=True
    )
    assert items[-1]["done"] is True
    assert emu.stats()["requests"]["t2a_v2"] == 2


async def test_a_stream_stopped_by_the_caller_is_charged_what_it_delivered(
    streamer: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user()
    emu.configure(chunk_delay_seconds=0.2)
    stream = streamer.handler(
        {
            "id": "s-5",
            "input": {"api_key": key, "text": TEXT * 2, "voice": "british-female", "stream": True},
        }
    )
    received = [await stream.__anext__() for _ in range(3)]
    await stream.aclose()
    audio = b"".join(base64.b64decode(c["audio_base64"]) for c in received)
    used, row = await charged(streamer)
    assert (row.status, row.error_code) == ("succeeded", "cancelled")
    assert row.duration_ms is not None
    assert used == row.duration_ms > 0
    # What was delivered, to the frame: no more than the bytes sent hold.
    assert used <= MP3(io.BytesIO(audio)).info.length * 1000 + 1
    assert used < row.estimated_ms


async def test_a_stream_cancelled_while_its_timings_are_fetched_is_charged_its_audio(
    streamer: Worker, make_user: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk is out; the caller cancels while the subtitle file is fetched: the
    audio it holds is charged, as any cancelled stream's is, never given away."""
    _, key = await make_user()
    fetching = asyncio.Event()

    async def stalled(url: str, *, request_id: str) -> list[Any]:
        fetching.set()
        await asyncio.Event().wait()  # a slow CDN
        raise AssertionError("unreachable")

    monkeypatch.setattr(streamer.pipeline().subtitles, "fetch", stalled)
    job = {"api_key": key, "text": TEXT, "voice": "british-female", "stream": True}
    chunks: list[dict[str, Any]] = []

    async def consume() -> None:  # RunPod iterates a job's generator in one task
        async for item in streamer.handler({"id": "s-ts", "input": {**job, "timestamps": True}}):
            chunks.append(item)

    consumer = asyncio.create_task(consume())
    await fetching.wait()  # every chunk handed over, the final item pending
    consumer.cancel()  # RunPod's /cancel
    with pytest.raises(asyncio.CancelledError):
        await consumer
    audio = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    used, row = await charged(streamer)
    assert (row.status, row.error_code) == ("succeeded", "cancelled")
    assert used == row.duration_ms
    assert 0 < used <= MP3(io.BytesIO(audio)).info.length * 1000 + 1


@backend_independent
async def test_wav_cannot_be_streamed(streamer: Worker, make_user: UserFactory) -> None:
    _, key = await make_user()
    [item] = await collect(
        streamer, "s-6", api_key=key, text=TEXT, voice="british-female", stream=True, format="wav"
    )
    assert json.loads(item["error"])["field"] == "stream"


@backend_independent
async def test_the_plain_endpoint_refuses_to_stream(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user()
    out = await run_job(api_key=key, text=TEXT, voice="british-female", stream=True)
    assert out["error"]["code"] == "invalid_request" and out["error"]["field"] == "stream"


@backend_independent
async def test_pcm_streams_too(streamer: Worker, make_user: UserFactory) -> None:
    _, key = await make_user()
    items = await collect(
        streamer,
        "s-7",
        api_key=key,
        text=TEXT,
        voice="british-female",
        stream=True,
        format="pcm",
        sample_rate=16000,
    )
    *chunks, final = items
    pcm = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    assert final["format"] == "pcm"
    assert len(pcm) / 2 / 16000 == pytest.approx(final["duration_seconds"], rel=0.03)
