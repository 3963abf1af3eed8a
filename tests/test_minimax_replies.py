"""The MiniMax boundary, through httpx.MockTransport: every reply is validated before
use; what is not what MiniMax documents is an upstream failure (retried, then
upstream_unavailable), never a crash; audio_length is charged only as far as the audio
bears it out; MiniMax's own words reach the log, never the caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odeatts.audio import duration_ms
from odeatts.errors import ERROR_CODES, OdeaError, UpstreamUnavailable
from odeatts.minimax import CloneUnconfirmed, MiniMaxClient, Speech, SpeechParams, StreamEnd
from tests.support.sounds import MP3_FRAME_MS, flac, mp3, wav

TRACE = "0123456789abcdef0123456789abcdef"
SECRET_MSG = "invalid params, voice English_Ours_7 unknown on mm-internal-7.corp"
MP3_MS = round(40 * MP3_FRAME_MS)  # 1045 ms
PARAMS = SpeechParams(text="Hello.", voice_id="English_Ours_7", model="speech-2.8-turbo")

Handler = Callable[[httpx.Request], httpx.Response]


async def _no_sleep(_: float) -> None:
    return None


def make_client(handler: Handler, retries: int = 2) -> MiniMaxClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://minimax.test")
    return MiniMaxClient(http, api_key="k", max_retries=retries, sleep=_no_sleep)


class Replies:
    """A MockTransport handler answering every request with the same reply; counts them.
    ``piece``: the body arrives in reads of that many bytes (as a network delivers it)."""

    def __init__(
        self,
        body: Any = None,
        *,
        content: bytes | None = None,
        content_type: str = "application/json",
        piece: int | None = None,
    ) -> None:
        self.content = content if content is not None else json.dumps(body).encode()
        self.content_type, self.piece, self.calls = content_type, piece, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        headers = {"content-type": self.content_type, "Trace-Id": TRACE}
        if self.piece is None:
            return httpx.Response(200, content=self.content, headers=headers)
        return httpx.Response(200, content=_reads(self.content, self.piece), headers=headers)


async def _reads(content: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


def valid(audio: bytes | None = None, length: int = MP3_MS, **extra: Any) -> dict[str, Any]:
    return {
        "data": {"audio": (mp3(40) if audio is None else audio).hex(), "status": 2},
        "extra_info": {
            "audio_length": length,
            "audio_sample_rate": 32000,
            "audio_size": 16680,
            "bitrate": 128000,
            "word_count": 1,
            "invisible_character_ratio": 0,
            "usage_characters": 6,
            "audio_format": "mp3",
            "audio_channel": 1,
            **extra,
        },
        "trace_id": TRACE,
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }


def with_(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with ``path`` (dotted) set to ``value``."""
    copy: dict[str, Any] = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = copy
    for key in parents:
        node = node[key]
    node[last] = value
    return copy


async def synthesize(handler: Handler, params: SpeechParams = PARAMS, retries: int = 2) -> Speech:
    client = make_client(handler, retries)
    try:
        return await client.synthesize(params, request_id="req-1")
    finally:
        await client.aclose()


# ------------------------------------------------------------------ plain replies
async def test_a_valid_reply_is_speech() -> None:
    speech = await synthesize(Replies(valid()))
    assert speech.audio == mp3(40) and speech.duration_ms == MP3_MS
    assert (speech.sample_rate, speech.format, speech.billed_characters, speech.trace_id) == (
        32000,
        "mp3",
        6,
        TRACE,
    )


INVALID = {
    "base_resp a string": with_(valid(), "base_resp", "success"),
    "base_resp a list": with_(valid(), "base_resp", [0, "success"]),
    "base_resp missing": {k: v for k, v in valid().items() if k != "base_resp"},
    "status_code a string": with_(valid(), "base_resp.status_code", "0"),
    "status_code a bool": with_(valid(), "base_resp.status_code", False),
    "data null on success": with_(valid(), "data", None),
    "data a string": with_(valid(), "data", "fffb"),
    "audio missing": with_(valid(), "data", {"status": 2}),
    "audio not hex": with_(valid(), "data.audio", "zz" * 10),
    "audio odd hex": with_(valid(), "data.audio", mp3(2).hex() + "f"),
    "audio not ascii": with_(valid(), "data.audio", "ff\u00e9e"),
    "audio a number": with_(valid(), "data.audio", 12),
    "audio not mp3": with_(valid(), "data.audio", b"<html>oops</html>".hex()),
    "audio empty": with_(valid(), "data.audio", ""),
    "extra_info missing": with_(valid(), "extra_info", None),
    "audio_sample_rate abc": with_(valid(), "extra_info.audio_sample_rate", "abc"),
    "audio_length a string": with_(valid(), "extra_info.audio_length", "1045"),
    "audio_length a bool": with_(valid(), "extra_info.audio_length", True),
    "audio_length a float": with_(valid(), "extra_info.audio_length", 1045.0),
    "audio_length negative": with_(valid(), "extra_info.audio_length", -5),
    "audio_length zero": with_(valid(), "extra_info.audio_length", 0),
    "audio_length over an hour": with_(valid(), "extra_info.audio_length", 1_000_000_000),
    "usage_characters a string": with_(valid(), "extra_info.usage_characters", "6"),
    "audio_format not the one asked": with_(valid(), "extra_info.audio_format", "wav"),
    "trace_id a number": with_(valid(), "trace_id", 5),
    "body a list": [valid()],
    "body null": None,
}


@pytest.mark.parametrize("body", INVALID.values(), ids=INVALID.keys())
async def test_an_invalid_reply_is_retried_then_upstream_unavailable(
    body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)  # an admin CLI test may have left root at CRITICAL
    replies = Replies(body)
    with pytest.raises(UpstreamUnavailable) as failure:
        await synthesize(replies)
    assert replies.calls == 3
    assert failure.value.message == UpstreamUnavailable.default_message
    assert "req-1" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        b"<html>502</html>",
        b"[" * 100_000,
        b"\xff\xfe{}",
        b'{"base_resp": {"status_code": 1' + b"0" * 5000 + b"}}",
    ],
)
async def test_a_body_that_is_not_json_is_retried_then_upstream_unavailable(content: bytes) -> None:
    replies = Replies(content=content)
    with pytest.raises(UpstreamUnavailable):
        await synthesize(replies)
    assert replies.calls == 3


async def test_an_error_reply_may_have_data_null_and_odd_fields() -> None:
    body = {
        "data": None,
        "extra_info": "?",
        "base_resp": {"status_code": 1026, "status_msg": SECRET_MSG},
    }
    with pytest.raises(OdeaError) as failure:
        await synthesize(Replies(body))
    assert failure.value.code == "content_rejected"


async def test_a_status_msg_of_the_wrong_type_does_not_hide_the_code() -> None:
    body = {"data": None, "base_resp": {"status_code": 1042, "status_msg": ["x"]}}
    with pytest.raises(OdeaError) as failure:
        await synthesize(Replies(body))
    assert failure.value.code == "invalid_request"


@pytest.mark.parametrize("code", [2013, 1004, 2042, 1043, 1000, 1002])
async def test_status_msg_goes_to_the_log_not_to_the_caller(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    msg = SECRET_MSG + " Bearer sk-live-123456 " + "x" * 400
    body = {"data": None, "trace_id": TRACE, "base_resp": {"status_code": code, "status_msg": msg}}
    with pytest.raises(OdeaError) as failure:
        await synthesize(Replies(body))
    assert "mm-internal" not in failure.value.to_wire()
    assert "English_Ours_7" not in failure.value.to_wire()
    line = next(r.getMessage() for r in caplog.records if "base_resp" in r.getMessage())
    assert "mm-internal-7.corp" in line and TRACE in line and "req-1" in line
    assert "sk-live" not in caplog.text and "x" * 201 not in caplog.text


async def test_a_claim_far_above_the_audio_is_charged_the_audio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="odeatts.minimax"):
        speech = await synthesize(Replies(valid(length=3_000_000)))
    assert speech.duration_ms == MP3_MS
    [warning] = [r for r in caplog.records if "audio_length" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert all(s in warning.getMessage() for s in ("3000000", str(MP3_MS), TRACE, "req-1"))


@pytest.mark.parametrize(
    ("claimed", "charged", "warned"),
    [
        (MP3_MS - 20, MP3_MS - 20, False),  # encoder padding: MiniMax's figure, smaller
        (MP3_MS + 200, MP3_MS, False),  # within 250 ms: the measure, smaller, no noise
        (MP3_MS - 400, MP3_MS - 400, True),  # MiniMax says less: never charge more than it bills
    ],
)
async def test_the_smaller_figure_is_charged(
    claimed: int, charged: int, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    speech = await synthesize(Replies(valid(length=claimed)))
    assert speech.duration_ms == charged
    assert any("audio_length" in r.getMessage() for r in caplog.records) is warned


@pytest.mark.parametrize(
    ("fmt", "audio", "measured"),
    [
        ("wav", wav(16000, rate=32000), 500),
        ("pcm", bytes(32000), 500),
        ("flac", flac(44100), 1000),
    ],
    ids=["wav", "pcm", "flac"],
)
async def test_other_formats_are_measured_too(fmt: str, audio: bytes, measured: int) -> None:
    params = SpeechParams(text="Hi.", voice_id="v", model="speech-2.8-turbo", format=fmt)
    speech = await synthesize(Replies(valid(audio, 900_000, audio_format=fmt)), params)
    assert speech.duration_ms == measured and speech.format == fmt


@pytest.mark.parametrize(
    ("fmt", "audio"),
    [
        ("wav", mp3(10)),
        ("pcm", bytes(3)),
        ("flac", wav(100)),
        ("flac", flac(0)),
    ],
    ids=["mp3 as wav", "odd pcm", "wav as flac", "flac without a sample count"],
)
async def test_audio_not_of_the_asked_format_is_upstream_unavailable(
    fmt: str, audio: bytes
) -> None:
    params = SpeechParams(text="Hi.", voice_id="v", model="speech-2.8-turbo", format=fmt)
    with pytest.raises(UpstreamUnavailable):
        await synthesize(Replies(valid(audio, 500, audio_format=fmt)), params)


# ------------------------------------------------------------------------ streams
def sse(*events: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def chunk(audio: bytes) -> dict[str, Any]:
    return {
        "data": {"audio": audio.hex(), "status": 1},
        "trace_id": TRACE,
        "base_resp": {"status_code": 0, "status_msg": ""},
    }


def final(length: int, **extra: Any) -> dict[str, Any]:
    return {
        "data": {"audio": "", "status": 2},
        "trace_id": TRACE,
        "extra_info": {
            "audio_length": length,
            "audio_sample_rate": 32000,
            "usage_characters": 6,
            "audio_format": "mp3",
            **extra,
        },
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }


async def stream(handler: Handler, params: SpeechParams = PARAMS) -> list[bytes | StreamEnd]:
    client = make_client(handler)
    try:
        return [item async for item in client.stream(params, request_id="req-1")]
    finally:
        await client.aclose()


async def test_a_stream_s_end_is_checked_against_what_it_delivered() -> None:
    body = sse(chunk(mp3(20)), chunk(mp3(20)), final(3_000_000))
    *chunks, end = await stream(Replies(content=body, content_type="text/event-stream"))
    assert chunks == [mp3(20), mp3(20)]
    assert isinstance(end, StreamEnd) and end.duration_ms == MP3_MS


async def test_a_pcm_stream_is_measured_at_the_asked_rate() -> None:
    params = SpeechParams(text="Hi.", voice_id="v", model="m", format="pcm", sample_rate=16000)
    body = sse(chunk(bytes(16000)), chunk(bytes(16000)), final(1000, audio_format="pcm"))
    *_, end = await stream(Replies(content=body, content_type="text/event-stream"), params)
    assert isinstance(end, StreamEnd) and end.duration_ms == 1000


@pytest.mark.parametrize(
    ("events", "attempts"),
    [
        ([{"data": {"audio": "", "status": 1}, "base_resp": "ok"}, chunk(mp3(2)), final(50)], 3),
        ([["not", "an", "object"], final(50)], 3),
        ([final(50)], 3),  # an end, nothing delivered
        # Once a chunk is out a retry would repeat audio: the stream fails, not retried.
        ([chunk(mp3(2)), {**final(50), "extra_info": None}], 1),  # status 2, no extra_info
        ([chunk(b"<html>oops</html>"), final(50)], 1),  # chunks that are not mp3
        ([chunk(mp3(2)), final(1_000_000_000)], 1),
        ([chunk(mp3(2)), final(50, audio_sample_rate="abc")], 1),
        ([chunk(mp3(2)), {**chunk(mp3(2)), "base_resp": "ok"}], 1),
        ([chunk(mp3(2))], 1),  # no final event
    ],
)
async def test_an_invalid_stream_is_upstream_unavailable(events: list[Any], attempts: int) -> None:
    replies = Replies(content=sse(*events), content_type="text/event-stream")
    with pytest.raises(UpstreamUnavailable):
        await stream(replies)
    assert replies.calls == attempts


@pytest.mark.parametrize("call", ["synthesize", "stream"])
async def test_retries_back_off_doubling_slower_when_busy_each_through_the_gate(
    call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One retry rule for a call and a stream (before its first chunk): the backoff
    doubles per attempt, is four times longer after a busy refusal, then the gate."""
    monkeypatch.setattr(random, "random", lambda: 0.5)  # the jitter's midpoint: none
    busy = {"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}
    unknown = {"base_resp": {"status_code": 1000, "status_msg": "unknown error"}}
    success = (
        Replies(valid())
        if call == "synthesize"
        else Replies(content=sse(chunk(mp3(2)), final(50)), content_type="text/event-stream")
    )
    replies = [Replies(busy), Replies(unknown), success]
    waits: list[str] = []

    async def sleep(seconds: float) -> None:
        waits.append(f"sleep {seconds}")

    async def gate() -> None:
        waits.append("gate")

    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: replies.pop(0)(r)), base_url="http://minimax.test"
    )
    client = MiniMaxClient(http, api_key="k", max_retries=2, retry_base_seconds=0.5, sleep=sleep)
    try:
        if call == "synthesize":
            await client.synthesize(PARAMS, request_id="req-1", retry_gate=gate)
        else:
            [_ async for _ in client.stream(PARAMS, request_id="req-1", retry_gate=gate)]
    finally:
        await client.aclose()
    assert waits == ["sleep 2.0", "gate", "sleep 1.0", "gate"] and replies == []


async def test_a_stream_error_event_s_message_stays_in_the_log() -> None:
    error = {"data": None, "base_resp": {"status_code": 2013, "status_msg": SECRET_MSG}}
    replies = Replies(content=sse(chunk(mp3(2)), error), content_type="text/event-stream")
    with pytest.raises(OdeaError) as failure:
        await stream(replies)
    assert failure.value.code == "invalid_request"
    assert "mm-internal" not in failure.value.to_wire()


# ----------------------------------------------------- streams as MiniMax may send them
# Server-sent events as the SSE spec defines them (not only as our emulator writes
# them), and MiniMax's end as it documents it: data.status 2, with audio_size telling
# whether the final event's audio is a tail (deliver it) or a copy (drop it).
def frames(count: int, fill: int) -> bytes:
    """``count`` MP3 frames whose bytes say which piece they are (``fill``)."""
    return (bytes.fromhex("fffb9000") + bytes([fill]) * 413) * count


def ms(frame_count: int) -> int:
    return round(frame_count * MP3_FRAME_MS)


A, B, TAIL = frames(20, 1), frames(20, 2), frames(5, 3)
AB, ABT = A + B, A + B + TAIL


def data(event: Any) -> bytes:
    return b"data: " + json.dumps(event).encode()


def ending(length: int | None = ms(40), audio: bytes = b"", **extra: Any) -> dict[str, Any]:
    """A final event (data.status 2) with ``audio``; ``length`` None: no audio_length."""
    event = final(length or 1, **extra)
    event["data"]["audio"] = audio.hex()
    if length is None:
        del event["extra_info"]["audio_length"]
    return event


def two_data_lines(event: Any) -> bytes:
    """One event whose JSON is cut over two ``data:`` lines (the SSE join is a newline)."""
    text = json.dumps(event)
    cut = text.index(', "trace_id"') + 1
    return b"data: " + text[:cut].encode() + b"\ndata: " + text[cut:].encode()


BIG = frames(5000, 4)  # a 4 MB line of hex in one event
SIZE: dict[str, Any] = {"audio_size": len(ABT)}  # Any: mypy matches **SIZE to audio: bytes

# id: (body, the chunks the client must yield, the duration it must charge)
STREAMS: dict[str, tuple[bytes, list[bytes], int]] = {
    # 1. An event ends at a blank line OR at the end of the stream.
    "last event without its blank line": (sse(chunk(A), chunk(B)) + data(ending()), [A, B], ms(40)),
    "last event ends in a single newline": (
        sse(chunk(A), chunk(B)) + data(ending()) + b"\n",
        [A, B],
        ms(40),
    ),
    # 2. The data lines of one event are joined with a newline.
    "an event's data over two lines": (
        two_data_lines(chunk(A)) + b"\n\n" + sse(chunk(B), ending()),
        [A, B],
        ms(40),
    ),
    # 3. audio_size decides what the final event's audio is.
    "the final event carries the tail": (
        sse(chunk(A), chunk(B), ending(ms(45), TAIL, **SIZE)),
        [A, B, TAIL],
        ms(45),
    ),
    "the final event repeats all the audio": (
        sse(chunk(A), chunk(B), ending(ms(40), AB, audio_size=len(AB))),
        [A, B],
        ms(40),
    ),
    "the final event holds all, the chunks fell short": (
        sse(chunk(A), chunk(B), ending(ms(45), ABT, **SIZE)),
        [A, B, TAIL],
        ms(45),
    ),
    "no audio_size: the final event's audio is dropped": (
        sse(chunk(A), chunk(B), ending(ms(40), AB)),
        [A, B],
        ms(40),
    ),
    "the final event is all there is": (sse(ending(ms(45), ABT, **SIZE)), [ABT], ms(45)),
    # 4. The end is data.status 2, not extra_info; audio_length may be missing.
    "extra_info on a chunk is not the end": (
        sse({**chunk(A), "extra_info": final(ms(20))["extra_info"]}, chunk(B), ending()),
        [A, B],
        ms(40),
    ),
    "a final event without audio_length": (
        sse(chunk(A), chunk(B), ending(None, **SIZE | {"audio_size": len(AB)})),
        [A, B],
        ms(40),
    ),
    "a final event with audio_length null": (
        sse(chunk(A), chunk(B), with_(ending(), "extra_info.audio_length", None)),
        [A, B],
        ms(40),
    ),
    # The rest of the SSE spec, and what MiniMax's peers tolerate.
    "comments": (
        b": keep-alive\n\n" + data(chunk(A)) + b"\n: still here\n\n" + sse(chunk(B), ending()),
        [A, B],
        ms(40),
    ),
    "CRLF line ends": (sse(chunk(A), chunk(B), ending()).replace(b"\n", b"\r\n"), [A, B], ms(40)),
    "CR line ends": (sse(chunk(A), chunk(B), ending()).replace(b"\n", b"\r"), [A, B], ms(40)),
    "event and id fields": (
        b"event: message\nid: 1\n"
        + data(chunk(A))
        + b"\n\nid: 2\nretry: 100\n"
        + sse(chunk(B))
        + b"event: done\n"
        + sse(ending()),
        [A, B],
        ms(40),
    ),
    "no space after data:": (
        sse(chunk(A), chunk(B), ending()).replace(b"data: ", b"data:"),
        [A, B],
        ms(40),
    ),
    "[DONE] after the final event": (
        sse(chunk(A), chunk(B), ending()) + b"data: [DONE]\n\n",
        [A, B],
        ms(40),
    ),
    "a multi-MB line": (sse(chunk(BIG), ending(ms(5000))), [BIG], ms(5000)),
}


@pytest.mark.parametrize("piece", [None, 7], ids=["in one read", "in 7-byte reads"])
@pytest.mark.parametrize(("body", "chunks", "charged"), STREAMS.values(), ids=STREAMS.keys())
async def test_a_stream_is_read_as_the_sse_spec_and_minimax_s_docs_say(
    body: bytes, chunks: list[bytes], charged: int, piece: int | None
) -> None:
    if piece and len(body) > 100_000:
        piece = 65_536
    replies = Replies(content=body, content_type="text/event-stream", piece=piece)
    *got, end = await stream(replies)
    assert got == chunks  # every byte MiniMax made, once, in order
    assert isinstance(end, StreamEnd) and end.duration_ms == charged
    assert replies.calls == 1


async def test_a_final_event_s_audio_without_audio_size_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="odeatts.minimax")
    body = sse(chunk(A), chunk(B), ending(ms(40), AB))
    *got, _ = await stream(Replies(content=body, content_type="text/event-stream"))
    assert got == [A, B]
    [line] = [r for r in caplog.records if "audio_size" in r.getMessage()]
    assert line.levelno == logging.DEBUG and "req-1" in line.getMessage()


async def test_a_final_event_s_audio_that_does_not_add_up_is_dropped_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="odeatts.minimax")
    body = sse(chunk(A), chunk(B), ending(ms(40), TAIL, audio_size=len(ABT) + 1))
    *got, end = await stream(Replies(content=body, content_type="text/event-stream"))
    assert got == [A, B] and isinstance(end, StreamEnd) and end.duration_ms == ms(40)
    [line] = [r for r in caplog.records if "audio_size" in r.getMessage()]
    assert line.levelno == logging.WARNING and "req-1" in line.getMessage()


async def test_a_json_success_reply_to_a_stream_request_is_one_chunk_then_the_end() -> None:
    replies = Replies(valid(ABT, ms(45), audio_size=len(ABT)))
    *got, end = await stream(replies)
    assert got == [ABT]
    assert isinstance(end, StreamEnd) and end.duration_ms == ms(45)
    assert (end.billed_characters, end.trace_id) == (6, TRACE)
    assert replies.calls == 1  # a success: not retried


@pytest.mark.parametrize(
    ("body", "code", "attempts"),
    [
        (
            {"data": None, "base_resp": {"status_code": 1002, "status_msg": "rpm"}},
            "upstream_busy",
            3,
        ),
        (
            {"data": None, "base_resp": {"status_code": 2013, "status_msg": SECRET_MSG}},
            "invalid_request",
            1,
        ),
        (with_(valid(), "extra_info", None), "upstream_unavailable", 3),
        (with_(valid(), "data.audio", ""), "upstream_unavailable", 3),
        (with_(valid(), "data.audio", b"<html>oops</html>".hex()), "upstream_unavailable", 3),
    ],
    ids=["1002", "2013", "no extra_info", "no audio", "audio not mp3"],
)
async def test_a_json_reply_to_a_stream_request_that_is_not_speech_is_an_error(
    body: Any, code: str, attempts: int
) -> None:
    replies = Replies(body)
    with pytest.raises(OdeaError) as failure:
        await stream(replies)
    assert failure.value.code == code and replies.calls == attempts


# ------------------------------------------------------------------ voice replies
async def test_voice_list_upload_and_clone_replies_are_validated() -> None:
    ok = {"base_resp": {"status_code": 0, "status_msg": "success"}}
    client = make_client(
        Replies({**ok, "system_voice": [{"voice_id": "A", "voice_name": "a", "description": []}]})
    )
    assert (await client.list_voices())["system_voice"][0]["voice_id"] == "A"
    cases: list[tuple[dict[str, Any], Callable[[MiniMaxClient], Awaitable[Any]]]] = [
        ({**ok, "system_voice": "A"}, lambda c: c.list_voices()),
        ({**ok, "system_voice": [{"voice_id": 7}]}, lambda c: c.list_voices()),
        ({**ok, "file": {"file_id": "123"}}, lambda c: c.upload_file("a.wav", b"RIFF")),
        ({**ok, "file": None}, lambda c: c.upload_file("a.wav", b"RIFF")),
    ]
    for body, call in cases:
        replies = Replies(body)
        with pytest.raises(UpstreamUnavailable):
            await call(make_client(replies))
        assert replies.calls == 3


async def test_an_invalid_clone_reply_is_not_retried() -> None:
    """A retried voice_clone can only meet 2039 (id in use): the clone exists."""
    replies = Replies({"demo_audio": 5, "base_resp": {"status_code": 0, "status_msg": ""}})
    with pytest.raises(CloneUnconfirmed):
        await make_client(replies).clone_voice(file_id=1, voice_id="Voice_0001")
    assert replies.calls == 1


OK = {"status_code": 0, "status_msg": "success"}


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, json={"demo_audio": "", "base_resp": {"status_code": 1000}}),
        httpx.Response(200, json={"demo_audio": "", "base_resp": {"status_code": 1001}}),
        httpx.Response(200, content=b'{"demo_audio": '),
        httpx.ReadTimeout("silent"),
    ],
    ids=["502", "1000", "1001", "cut body", "timeout"],
)
async def test_a_clone_that_may_exist_is_never_retried(
    reply: httpx.Response | httpx.ReadTimeout,
) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if isinstance(reply, Exception):
            raise reply
        return reply

    with pytest.raises(CloneUnconfirmed) as failure:
        await make_client(handler).clone_voice(
            file_id=1, voice_id="Voice_0001", preview_text="Hi.", model="speech-02-hd"
        )
    assert len(calls) == 1
    assert failure.value.error.code == "upstream_unavailable"


@pytest.mark.parametrize(
    ("code", "error"),
    [(2039, "upstream_rejected"), (1008, "service_unavailable"), (1002, "upstream_busy")],
)
async def test_a_clone_refused_for_sure_is_its_error(code: int, error: str) -> None:
    replies = Replies({"demo_audio": "", "base_resp": {"status_code": code, "status_msg": ""}})
    with pytest.raises(OdeaError) as failure:
        await make_client(replies).clone_voice(file_id=1, voice_id="Voice_0001")
    assert failure.value.code == error and replies.calls == 1


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"input_sensitive": False, "input_sensitive_type": 0}, None),
        ({}, None),
        ({"input_sensitive": True, "input_sensitive_type": 3}, 3),
        ({"input_sensitive": True}, 0),
        ({"input_sensitive": False, "input_sensitive_type": 2}, 2),
        ({"input_sensitive": {"type": 5}}, 5),
        ({"input_sensitive": {"type": 0}}, None),
    ],
    ids=["clean", "absent", "bool and type", "bool alone", "type alone", "object", "object clean"],
)
async def test_a_flagged_sample_is_read_from_either_documented_shape(
    flags: dict[str, Any], expected: int | None
) -> None:
    body = {
        "demo_audio": "https://x/demo.mp3",
        **flags,
        "extra_info": {"usage_characters": 9},
        "base_resp": OK,
    }
    reply = await make_client(Replies(body)).clone_voice(file_id=1, voice_id="Voice_0001")
    assert reply.sensitive_type == expected
    assert (reply.demo_audio, reply.billed_characters) == ("https://x/demo.mp3", 9)


async def test_odd_preview_billing_does_not_undo_a_clone() -> None:
    body = {"demo_audio": "", "extra_info": {"usage_characters": "9"}, "base_resp": OK}
    reply = await make_client(Replies(body)).clone_voice(file_id=1, voice_id="Voice_0001")
    assert reply.billed_characters is None and reply.demo_audio is None


# --------------------------------------------------------------------------- fuzz
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    "data",
    "data.audio",
    "data.status",
    "extra_info",
    "extra_info.audio_length",
    "extra_info.audio_sample_rate",
    "extra_info.usage_characters",
    "extra_info.audio_format",
    "extra_info.audio_size",
    "extra_info.bitrate",
    "extra_info.invisible_character_ratio",
    "trace_id",
    "base_resp",
    "base_resp.status_code",
    "base_resp.status_msg",
]
CODES = st.sampled_from([0, 1000, 1002, 1004, 1026, 1042, 2013, 2042, 2056, 9999, -1])


def mutated(body: dict[str, Any], changes: list[tuple[str, Any]]) -> Any:
    for path, value in changes:
        with contextlib.suppress(KeyError, TypeError):  # a parent is no longer an object
            body = with_(body, path, value)
    return body


REPLY = st.one_of(
    st.lists(st.tuples(st.sampled_from(PATHS), JSON | CODES), min_size=1, max_size=4).map(
        lambda changes: mutated(with_(valid(), "base_resp.status_msg", SECRET_MSG), changes)
    ),
    st.fixed_dictionaries(
        {
            "base_resp": st.fixed_dictionaries(
                {"status_code": CODES | JSON, "status_msg": st.just(SECRET_MSG)}
            )
        },
        optional={"data": JSON, "extra_info": JSON, "trace_id": JSON},
    ),
    JSON,
)


def outcome(handler: Handler, run: Callable[[MiniMaxClient], Any]) -> Any:
    async def go() -> Any:
        client = make_client(handler, retries=1)
        try:
            return await run(client)
        except OdeaError as exc:
            return exc
        finally:
            await client.aclose()

    return asyncio.run(go())


def assert_safe(result: Any) -> None:
    if isinstance(result, OdeaError):
        assert result.code in ERROR_CODES and result.code != "internal"
        assert "mm-internal" not in result.to_wire()


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(REPLY)
def test_any_reply_is_speech_or_a_clean_upstream_error(body: Any) -> None:
    result = outcome(Replies(body), lambda c: c.synthesize(PARAMS, request_id="fuzz"))
    assert_safe(result)
    if isinstance(result, Speech):
        assert 0 <= result.duration_ms <= duration_ms(result.audio, "mp3", 32000)


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.integers(0, 2),
    st.lists(st.tuples(st.sampled_from(PATHS), JSON | CODES), min_size=1, max_size=3),
)
def test_any_stream_event_gives_chunks_then_an_end_or_a_clean_error(
    index: int, changes: list[tuple[str, Any]]
) -> None:
    events: list[Any] = [chunk(mp3(20)), chunk(mp3(20)), final(MP3_MS)]
    events[index] = mutated(with_(events[index], "base_resp.status_msg", SECRET_MSG), changes)
    replies = Replies(content=sse(*events), content_type="text/event-stream")

    async def items(client: MiniMaxClient) -> list[bytes | StreamEnd]:
        return [item async for item in client.stream(PARAMS, request_id="fuzz")]

    result = outcome(replies, items)
    assert_safe(result)
    if isinstance(result, list) and result and isinstance(result[-1], StreamEnd):
        delivered = b"".join(i for i in result if isinstance(i, bytes))
        assert 0 < result[-1].duration_ms <= duration_ms(delivered, "mp3", 32000)
