"""MiniMax replies that are not what its API documents, end to end through the worker:
each is an upstream failure (retried, then upstream_unavailable), never `internal`; a
claimed audio_length is charged only as far as the audio bears it out; MiniMax's own
error text stays in our log. Nothing is charged for a failure, and the next job works.

MiniMax-only behaviour: one backend is enough."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mutagen.mp3 import MP3
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts.audio import duration_ms
from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory
from tests.test_upstream_faults import MAX_ATTEMPTS, assert_nothing_charged, assert_recovers

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

SENTENCE = "Lagos wakes early, and the ferries leave on time. "
INTERNAL = "invalid params, voice English_Trustworth_Man unknown at mm-internal-7.corp:8443"
TRACE = re.compile(r"\b[0-9a-f]{32}\b")


async def charged(worker: Worker) -> tuple[int, Usage]:
    async with worker.pipeline().sessions() as session:
        used = (await session.execute(select(User.used_ms))).scalar_one()
        row = (await session.execute(select(Usage))).scalar_one()
    return used, row


# --------------------------------------------------------------------- plain jobs
INVALID = {
    "base_resp a string": {"kind": "reply", "body": {"data": None, "base_resp": "success"}},
    "base_resp a list": {"kind": "reply", "body": {"data": None, "base_resp": [0, "ok"]}},
    "audio_sample_rate abc": {"kind": "lie", "extra_info": {"audio_sample_rate": "abc"}},
    "audio_length 1e9": {"kind": "lie", "audio_length": 1_000_000_000},
    "audio_length a string": {"kind": "lie", "audio_length": "1200"},
    "audio not mp3": {"kind": "audio_bytes", "hex": b"<html>oops</html>".hex()},
    "audio not hex": {"kind": "audio_bytes", "hex": "not hex at all"},
}


@pytest.mark.parametrize("fault", INVALID.values(), ids=INVALID.keys())
async def test_an_invalid_reply_is_upstream_unavailable_and_charges_nothing(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    fault: dict[str, Any],
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "times": 0, **fault})
    out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    assert out["error"]["code"] == "upstream_unavailable", out
    assert emu.stats()["requests"]["t2a_v2"] == MAX_ATTEMPTS  # retried like a 5xx
    await assert_nothing_charged(worker, "upstream_unavailable")
    emu.reset()
    await assert_recovers(run_job, key)


@pytest.mark.parametrize("times", [1, 0], ids=["once, then retried", "always"])
async def test_non_mp3_bytes_in_a_long_text_s_part(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator, times: int
) -> None:
    worker = Worker(make_settings(ODEATTS_PART_CHARS=200))
    try:
        _, key = await make_user("pro")
        emu.add_fault(
            {
                "endpoint": "t2a_v2",
                "kind": "audio_bytes",
                "times": times,
                "hex": b"\x00\x01not an mp3 frame".hex(),
            }
        )
        out = await worker.handle(
            {
                "id": f"long-{times}",
                "input": {"api_key": key, "text": SENTENCE * 8, "voice": "american-male"},
            }
        )
        if times:
            assert "error" not in out, out
            audio = base64.b64decode(out["audio_base64"])
            assert MP3(io.BytesIO(audio)).info.length == pytest.approx(
                out["duration_seconds"], rel=0.03
            )
            used, row = await charged(worker)
            assert used == row.duration_ms == round(out["duration_seconds"] * 1000)
        else:
            assert json.loads(out["error"])["code"] == "upstream_unavailable"
            await assert_nothing_charged(worker, "upstream_unavailable")
        emu.reset()
        again = await worker.handle(
            {
                "id": "long-next",
                "input": {"api_key": key, "text": SENTENCE * 8, "voice": "american-male"},
            }
        )
        assert "error" not in again, again
    finally:
        await worker.aclose()


async def test_an_audio_length_beyond_the_audio_is_charged_the_audio(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "lie", "audio_length": 3_000_000})
    with caplog.at_level(logging.WARNING, logger="odeatts.minimax"):
        out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    audio = base64.b64decode(out["audio_base64"])
    used, row = await charged(worker)
    assert row.duration_ms is not None
    assert 0 < used == row.duration_ms <= MP3(io.BytesIO(audio)).info.length * 1000 + 1
    assert out["duration_seconds"] == used / 1000
    [warning] = [r.getMessage() for r in caplog.records if "audio_length" in r.getMessage()]
    assert "3000000" in warning and str(used) in warning
    assert row.trace_id and row.trace_id in warning and row.job_id in warning


@pytest.mark.parametrize("code", [2013, 1004, 2042, 1026, 9999])
async def test_minimax_s_words_reach_the_log_not_the_caller(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
    code: int,
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": code, "msg": INTERNAL})
    out = await run_job("job-words", api_key=key, text="Hello there.", voice="american-male")
    wire = json.dumps(out["error"])
    assert "mm-internal" not in wire and "English_Trustworth_Man" not in wire
    [line] = [r.getMessage() for r in caplog.records if "base_resp" in r.getMessage()]
    assert "mm-internal-7.corp" in line and "job-words" in line and TRACE.search(line)
    await assert_nothing_charged(worker, out["error"]["code"])
    emu.reset()
    await assert_recovers(run_job, key)


# ------------------------------------------------------------------------ streams
@pytest.fixture
async def streamer(make_settings: Callable[..., Settings]) -> AsyncIterator[Worker]:
    worker = Worker(make_settings(ODEATTS_HANDLER="stream", ODEATTS_STREAM_CHUNK_BYTES=4096))
    yield worker
    await worker.aclose()


async def collect(worker: Worker, job_id: str, key: str) -> list[dict[str, Any]]:
    return [
        item
        async for item in worker.handler(
            {
                "id": job_id,
                "input": {
                    "api_key": key,
                    "text": SENTENCE * 2,
                    "voice": "british-female",
                    "stream": True,
                },
            }
        )
    ]


ODD_EVENT = {"data": {"audio": "", "status": 1}, "base_resp": "success"}


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        ({"kind": "stream_event", "event": ODD_EVENT, "after_chunks": 0, "times": 0}, MAX_ATTEMPTS),
        ({"kind": "stream_event", "event": ODD_EVENT, "after_chunks": 2}, 1),
        ({"kind": "stream_event", "event": [1, 2], "after_chunks": 2}, 1),
        ({"kind": "lie", "audio_length": 1_000_000_000}, 1),
        ({"kind": "lie", "extra_info": {"audio_sample_rate": "abc"}}, 1),
    ],
    ids=[
        "base_resp a string first",
        "base_resp a string mid-stream",
        "an event not an object",
        "audio_length 1e9",
        "audio_sample_rate abc",
    ],
)
async def test_an_invalid_stream_event_ends_the_stream_cleanly_and_charges_nothing(
    streamer: Worker,
    make_user: UserFactory,
    emu: Emulator,
    fault: dict[str, Any],
    attempts: int,
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", **fault})
    items = await collect(streamer, "s-bad", key)
    error = json.loads(items[-1]["error"])
    assert error["code"] == "upstream_unavailable" and error["charged_seconds"] == 0
    assert error["delivered_chunks"] == len(items) - 1
    assert emu.stats()["requests"]["t2a_v2"] == attempts  # retried only before any audio
    used, row = await charged(streamer)
    assert used == 0 and (row.status, row.error_code) == ("failed", "upstream_unavailable")
    emu.reset()
    assert (await collect(streamer, "s-next", key))[-1]["done"] is True


async def test_a_stream_s_audio_length_is_checked_against_what_it_delivered(
    streamer: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "lie", "audio_length": 3_000_000})
    *chunks, final = await collect(streamer, "s-lie", key)
    audio = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    used, row = await charged(streamer)
    assert row.duration_ms is not None
    assert 0 < used == row.duration_ms <= MP3(io.BytesIO(audio)).info.length * 1000 + 1
    assert final["duration_seconds"] == used / 1000


# ------------------------------------------- streams as MiniMax may send them (issue 9)
# Within MiniMax's docs, not only as our emulator used to write them: the caller gets
# every byte MiniMax made, once, and is charged once for what the audio holds.
CHUNK_WITH_EXTRA_INFO = {
    "data": {"audio": "", "status": 1},
    "extra_info": {
        "audio_length": 400,
        "audio_sample_rate": 32000,
        "audio_size": 6400,
        "audio_format": "mp3",
        "usage_characters": 3,
    },
    "base_resp": {"status_code": 0, "status_msg": ""},
}
FAITHFUL = {
    "last event without its blank line": {"kind": "stream_unterminated"},
    "last event ends in one newline": {"kind": "stream_unterminated", "ending": "\n"},
    "the final event carries the tail": {"kind": "stream_tail"},
    "a final event without audio_length": {"kind": "lie", "omit": ["audio_length"]},
    "extra_info on a chunk is not the end": {
        "kind": "stream_event",
        "event": CHUNK_WITH_EXTRA_INFO,
        "after_chunks": 1,
    },
    "one JSON reply": {"kind": "stream_json"},
}


def fingerprint(audio: bytes) -> dict[str, Any]:
    return {"size": len(audio), "sha256": hashlib.sha256(audio).hexdigest()}


@pytest.mark.parametrize("fault", FAITHFUL.values(), ids=FAITHFUL.keys())
async def test_a_stream_minimax_may_send_reaches_the_caller_whole_and_charged_once(
    streamer: Worker, make_user: UserFactory, emu: Emulator, fault: dict[str, Any]
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", **fault})
    *chunks, final = await collect(streamer, "s-faithful", key)
    assert final.get("done") is True, final
    audio = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    assert emu.stats()["audio"] == [fingerprint(audio)]  # every byte MiniMax made, once
    assert emu.stats()["requests"]["t2a_v2"] == 1  # a success, not retried
    measured = duration_ms(audio, "mp3", 32000)
    assert MP3(io.BytesIO(audio)).info.length * 1000 == pytest.approx(measured, abs=30)
    assert final["duration_seconds"] * 1000 == pytest.approx(measured, rel=0.03, abs=60)
    used, row = await charged(streamer)  # one usage row: charged once
    assert used == row.duration_ms == round(final["duration_seconds"] * 1000) <= measured
    assert (row.status, row.error_code) == ("succeeded", None)


async def test_a_pcm_stream_s_tail_in_the_final_event_is_delivered(
    streamer: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "stream_tail"})
    *chunks, final = [
        item
        async for item in streamer.handler(
            {
                "id": "s-pcm",
                "input": {
                    "api_key": key,
                    "text": SENTENCE * 2,
                    "voice": "british-female",
                    "stream": True,
                    "format": "pcm",
                    "sample_rate": 16000,
                },
            }
        )
    ]
    pcm = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    assert emu.stats()["audio"] == [fingerprint(pcm)]
    assert final["duration_seconds"] * 1000 == len(pcm) // 2 * 1000 // 16000
    used, _ = await charged(streamer)
    assert used == round(final["duration_seconds"] * 1000)
