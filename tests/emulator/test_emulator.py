"""The MiniMax emulator speaks MiniMax's wire protocol, makes real audio, and fails on demand.

Everything here goes over real HTTP (httpx) to an Emulator on a free loopback port.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lameenc
import mutagen.mp3
import pytest
from aiohttp import web

from minimax_emulator import Emulator, encode, probe, speech, voices
from minimax_emulator.background import BackgroundServer
from odeatts import mp3

KEY = "emulator-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SENTENCE = "Good morning. This is a test of the MiniMax emulator, speaking a whole sentence."
ROOT = Path(__file__).resolve().parents[2]


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def running() -> Iterator[Emulator]:
    with Emulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture
def mm(running: Emulator) -> Iterator[Emulator]:
    """The module's emulator, cleared before and after the test."""
    running.reset()
    running.configure(latency_seconds=0, per_char_latency_seconds=0, chunk_delay_seconds=0)
    yield running
    running.reset()


@pytest.fixture
def client(mm: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mm.url, headers=AUTH, timeout=10) as http:
        yield http


def t2a_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "speech-2.8-turbo",
        "text": SENTENCE,
        "voice_setting": {"voice_id": "English_expressive_narrator"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def t2a(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/t2a_v2", json=t2a_body(**overrides))
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()
    return reply


def audio_of(payload: dict[str, Any]) -> bytes:
    assert payload["base_resp"] == {"status_code": 0, "status_msg": "success"}, payload
    return bytes.fromhex(payload["data"]["audio"])


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: ") :]))
    return events


def wav_file(seconds: float, rate: int = 8000) -> bytes:
    period = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * k / 64))) for k in range(64)
    )
    count = int(seconds * rate)
    frames = (period * (count // 64 + 1))[: count * 2]  # one period repeated: 2 bytes a sample
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def mp3_file(seconds: float) -> bytes:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(32)
    encoder.set_in_sample_rate(16000)
    encoder.set_channels(1)
    return bytes(encoder.encode(bytes(int(seconds * 16000) * 2)) + encoder.flush())


def upload(client: httpx.Client, data: bytes, name: str = "sample.wav") -> dict[str, Any]:
    response = client.post(
        "/v1/files/upload", data={"purpose": "voice_clone"}, files={"file": (name, data)}
    )
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()
    return reply


def code_of(payload: dict[str, Any]) -> int:
    return int(payload["base_resp"]["status_code"])


# --- synthesis ----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_loud_long_audio_encodes_at_the_highest_rate_and_bitrate(channels: int) -> None:
    """lameenc's output buffer is sized from each call's input: seconds of loud sound
    upsampled to 44.1 kHz at 256 kbps overflowed it (LAME failed, the emulator said 500
    where MiniMax makes audio; the fuzz found it)."""
    noise = array("h", ((i * 7919) % 40001 - 20000 for i in range(encode.SOURCE_RATE * 3)))
    audio = encode.encode(noise, "mp3", 44100, 256000, channels)
    assert mp3.duration_ms(audio) == pytest.approx(3000, abs=60)


def test_t2a_returns_real_mp3_with_minimax_shape(client: httpx.Client) -> None:
    response = client.post("/v1/t2a_v2", json=t2a_body())
    payload = response.json()
    audio = audio_of(payload)
    info = payload["extra_info"]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["Trace-Id"] == payload["trace_id"]
    assert len(payload["trace_id"]) == 32 and int(payload["trace_id"], 16) >= 0
    assert payload["data"]["status"] == 2
    assert audio[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2") or audio[:3] == b"ID3"
    frames = mp3.frames(audio)
    assert len(frames) > 20 and all(f.sample_rate == 32000 for f in frames)
    assert mp3.duration_ms(audio) == pytest.approx(info["audio_length"], rel=0.05)
    assert mutagen.mp3.MP3(io.BytesIO(audio)).info.length * 1000 == pytest.approx(
        info["audio_length"], rel=0.05
    )
    assert info["audio_size"] == len(audio)
    assert info["audio_sample_rate"] == 32000 and info["bitrate"] == 128000
    assert info["audio_format"] == "mp3" and info["audio_channel"] == 1
    assert info["usage_characters"] == len(SENTENCE) and info["word_count"] == 14
    assert info["invisible_character_ratio"] == 0


def test_speed_changes_length(client: httpx.Client) -> None:
    slow = t2a(client, voice_setting={"speed": 0.5})["extra_info"]["audio_length"]
    fast = t2a(client, voice_setting={"speed": 2.0})["extra_info"]["audio_length"]
    assert fast < slow / 2


def test_pause_markers_add_silence(client: httpx.Client) -> None:
    plain = t2a(client, text="Hello there. How are you?")["extra_info"]["audio_length"]
    paused = t2a(client, text="Hello there.<#2.5#>How are you?")["extra_info"]
    assert paused["audio_length"] > plain + 2000
    assert paused["usage_characters"] == len("Hello there.How are you?")


def test_audio_settings_are_honoured(client: httpx.Client) -> None:
    audio_setting = {"sample_rate": 16000, "bitrate": 64000, "channel": 2}
    audio = audio_of(t2a(client, audio_setting=audio_setting))
    info = mutagen.mp3.MP3(io.BytesIO(audio)).info
    assert info.sample_rate == 16000 and info.channels == 2


def test_wav_and_pcm_formats(client: httpx.Client) -> None:
    wav_payload = t2a(client, audio_setting={"format": "wav", "sample_rate": 24000})
    with wave.open(io.BytesIO(audio_of(wav_payload))) as reader:
        assert reader.getframerate() == 24000 and reader.getsampwidth() == 2
        seconds = reader.getnframes() / reader.getframerate()
    assert seconds * 1000 == pytest.approx(wav_payload["extra_info"]["audio_length"], abs=2)
    pcm_payload = t2a(client, audio_setting={"format": "pcm", "sample_rate": 8000})
    pcm = audio_of(pcm_payload)
    assert len(pcm) / 2 / 8 == pytest.approx(pcm_payload["extra_info"]["audio_length"], abs=2)


def test_flac_is_answered_with_emulator_error(client: httpx.Client) -> None:
    payload = t2a(client, audio_setting={"format": "flac"})
    assert payload["base_resp"] == {
        "status_code": 1000,
        "status_msg": "emulator: flac not supported",
    }


def test_url_output_serves_the_audio(client: httpx.Client) -> None:
    payload = t2a(client, output_format="url")
    url = payload["data"]["audio"]
    assert url.startswith(client.base_url.scheme + "://")
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "audio/mpeg"
    assert len(fetched.content) == payload["extra_info"]["audio_size"]
    mp3.frames(fetched.content)


def test_two_thousand_characters_synthesise_quickly(client: httpx.Client) -> None:
    text = ("The quick brown fox jumps over the lazy dog again and again. " * 40)[:2000]
    started = time.perf_counter()
    payload = t2a(client, text=text)
    elapsed = time.perf_counter() - started
    assert payload["extra_info"]["audio_length"] > 60_000
    assert elapsed < 5.0, f"2,000 characters took {elapsed:.2f} s"  # ~0.55 s when idle


# --- validation and auth ----------------------------------------------------------------

INVALID = [
    {"model": "speech-9"},
    {"model": None},
    {"text": ""},
    {"text": "x" * 10_000},
    {"voice_setting": {"voice_id": ""}},
    {"voice_setting": {"speed": 2.5}},
    {"voice_setting": {"speed": 0.4}},
    {"voice_setting": {"vol": 0}},
    {"voice_setting": {"vol": 10.5}},
    {"voice_setting": {"pitch": 13}},
    {"voice_setting": {"pitch": 1.5}},
    {"voice_setting": {"emotion": "neutral"}},
    {"audio_setting": {"sample_rate": 48000}},
    {"audio_setting": {"bitrate": 96000}},
    {"audio_setting": {"format": "ogg"}},
    {"audio_setting": {"channel": 3}},
    {"output_format": "base64"},
    {"stream": True, "output_format": "url"},
    {"stream": True, "audio_setting": {"format": "wav"}},
]


@pytest.mark.parametrize("change", INVALID, ids=[json.dumps(c)[:40] for c in INVALID])
def test_invalid_params_give_2013(client: httpx.Client, change: dict[str, Any]) -> None:
    response = client.post("/v1/t2a_v2", json=t2a_body(**change))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert code_of(payload) == 2013
    assert payload["base_resp"]["status_msg"].startswith("invalid params")
    assert payload["data"] is None


def test_unknown_voice_gives_2042(client: httpx.Client) -> None:
    payload = t2a(client, voice_setting={"voice_id": "Nobody_Voice"})
    assert payload["base_resp"] == {
        "status_code": 2042,
        "status_msg": "voice id not exist or no access",
    }


def test_invisible_characters_give_1042(client: httpx.Client) -> None:
    assert code_of(t2a(client, text="Hi\u200b\u200b\u200b there")) == 1042
    ok = t2a(client, text="Hello there, general Kenobi\u200b")
    assert 0 < ok["extra_info"]["invisible_character_ratio"] <= 0.1


def test_not_json_gives_2013(client: httpx.Client) -> None:
    response = client.post("/v1/t2a_v2", content=b"{not json")
    assert code_of(response.json()) == 2013


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_bad_key_gives_1004(mm: Emulator, headers: dict[str, str]) -> None:
    response = httpx.post(f"{mm.url}/v1/t2a_v2", json=t2a_body(), headers=headers)
    assert response.status_code == 200
    assert response.json()["base_resp"]["status_code"] == 1004
    assert "login fail" in response.json()["base_resp"]["status_msg"]


def test_group_id_checked_only_when_configured_and_sent() -> None:
    with Emulator(api_key=KEY, group_id="g1") as emulator, httpx.Client(headers=AUTH) as http:
        url = f"{emulator.url}/v1/get_voice"
        body = {"voice_type": "system"}
        assert code_of(http.post(url, json=body).json()) == 0
        assert code_of(http.post(url, params={"GroupId": "g1"}, json=body).json()) == 0
        assert code_of(http.post(url, params={"GroupId": "other"}, json=body).json()) == 1004


def test_get_voice_must_be_post(client: httpx.Client) -> None:
    assert client.get("/v1/get_voice").status_code == 405


# --- streaming ----------------------------------------------------------------------


def test_stream_sends_frame_aligned_chunks_then_final(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    *chunks, final = events
    assert len(chunks) >= 2
    assert all(e["data"]["status"] == 1 and e["base_resp"]["status_code"] == 0 for e in chunks)
    pieces = [bytes.fromhex(e["data"]["audio"]) for e in chunks]
    for piece in pieces:
        mp3.frames(piece)  # every chunk is whole frames
    joined = b"".join(pieces)
    assert final["data"]["status"] == 2
    assert final["base_resp"] == {"status_code": 0, "status_msg": "success"}
    assert bytes.fromhex(final["data"]["audio"]) == joined
    assert final["extra_info"]["audio_size"] == len(joined)
    assert mp3.duration_ms(joined) == pytest.approx(final["extra_info"]["audio_length"], rel=0.05)


def test_stream_can_exclude_aggregated_audio(client: httpx.Client) -> None:
    body = t2a_body(stream=True, stream_options={"exclude_aggregated_audio": True})
    with client.stream("POST", "/v1/t2a_v2", json=body) as response:
        final = sse_events(response)[-1]
    assert final["data"]["status"] == 2 and final["data"]["audio"] == ""


def test_stream_pcm_chunks_concatenate(client: httpx.Client) -> None:
    body = t2a_body(stream=True, audio_setting={"format": "pcm", "sample_rate": 16000})
    with client.stream("POST", "/v1/t2a_v2", json=body) as response:
        *chunks, final = sse_events(response)
    joined = b"".join(bytes.fromhex(c["data"]["audio"]) for c in chunks)
    assert len(chunks) >= 2 and joined == bytes.fromhex(final["data"]["audio"])


def test_stream_validation_error_is_plain_json(client: httpx.Client) -> None:
    response = client.post("/v1/t2a_v2", json=t2a_body(stream=True, voice_setting={"pitch": 40}))
    assert response.headers["content-type"].startswith("application/json")
    assert code_of(response.json()) == 2013


def test_chunk_delay_paces_the_stream(client: httpx.Client, mm: Emulator) -> None:
    mm.configure(chunk_delay_seconds=0.1)
    started = time.perf_counter()
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        events = sse_events(response)
    assert time.perf_counter() - started >= 0.1 * (len(events) - 2)


# --- faults -------------------------------------------------------------------------


def test_fault_base_resp(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "base_resp", "code": 1002, "msg": "rate limit exceeded(RPM)"})
    payload = t2a(client)
    assert payload["data"] is None
    assert payload["base_resp"] == {"status_code": 1002, "status_msg": "rate limit exceeded(RPM)"}
    audio_of(t2a(client))  # used up after one request


def test_fault_http_status(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "http", "status": 502, "body": "bad gateway"})
    response = client.post("/v1/t2a_v2", json=t2a_body())
    assert response.status_code == 502 and response.text == "bad gateway"


def test_fault_delay_then_normal_answer(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "delay", "seconds": 0.4})
    started = time.perf_counter()
    audio_of(t2a(client))
    assert time.perf_counter() - started >= 0.4


def test_fault_malformed_and_truncated(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "malformed"})
    mm.add_fault({"kind": "truncated"})
    for _ in range(2):
        response = client.post("/v1/t2a_v2", json=t2a_body())
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            response.json()
    assert response.text.startswith('{"data": {"audio": "')


def test_fault_disconnect(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "disconnect"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/t2a_v2", json=t2a_body())
    audio_of(t2a(client))


def test_fault_stream_break(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "stream_break", "after_chunks": 2})
    events = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert [e["data"]["status"] for e in events] == [1, 1]


def test_fault_stream_error(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "stream_error", "after_chunks": 1, "code": 1000})
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        events = sse_events(response)
    assert len(events) == 2 and events[0]["data"]["status"] == 1
    assert events[1]["base_resp"]["status_code"] == 1000


def test_fault_reply_sends_exactly_the_body(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "reply", "body": {"data": None, "base_resp": "success"}})
    response = client.post("/v1/t2a_v2", json=t2a_body(stream=True))
    assert response.status_code == 200 and response.headers["Trace-Id"]
    assert response.json() == {"data": None, "base_resp": "success"}
    mm.add_fault({"kind": "reply", "body": [1, "two"], "endpoint": "get_voice"})
    assert client.post("/v1/get_voice", json={"voice_type": "all"}).json() == [1, "two"]


def test_fault_lie_overrides_extra_info(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "lie", "audio_length": 1_000_000_000})
    mm.add_fault({"kind": "lie", "extra_info": {"audio_sample_rate": "abc"}})
    lied = t2a(client)
    assert lied["extra_info"]["audio_length"] == 1_000_000_000
    assert mutagen.mp3.MP3(io.BytesIO(audio_of(lied))).info.length < 10  # the audio is real
    assert t2a(client)["extra_info"]["audio_sample_rate"] == "abc"
    assert t2a(client)["extra_info"]["audio_length"] < 10_000


def test_fault_lie_in_a_stream_is_in_the_final_event(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "lie", "audio_length": 123})
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        events = sse_events(response)
    assert events[-1]["data"]["status"] == 2 and events[-1]["extra_info"]["audio_length"] == 123


def test_fault_audio_bytes_replace_the_audio(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "audio_bytes", "hex": "3c68746d6c3e"})
    mm.add_fault({"kind": "audio_bytes", "hex": "not hex"})
    payload = t2a(client)
    assert payload["data"]["audio"] == "3c68746d6c3e" and payload["extra_info"]["audio_length"]
    assert t2a(client)["data"]["audio"] == "not hex"
    mm.add_fault({"kind": "audio_bytes", "hex": "00ff"})
    body = t2a_body(stream=True, stream_options={"exclude_aggregated_audio": True})
    with client.stream("POST", "/v1/t2a_v2", json=body) as response:
        events = sse_events(response)
    assert [e["data"]["audio"] for e in events] == ["00ff", ""]


def test_fault_stream_event_is_injected_mid_stream(client: httpx.Client, mm: Emulator) -> None:
    odd = {"data": {"audio": "", "status": 1}, "base_resp": "fine"}
    mm.add_fault({"kind": "stream_event", "event": odd, "after_chunks": 1})
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        events = sse_events(response)
    assert events[1] == odd and events[0]["data"]["status"] == 1
    assert events[-1]["data"]["status"] == 2  # the stream went on
    audio_of(t2a(client))  # not used by a plain request, and used up by the stream


@pytest.mark.parametrize("ending", ["", "\n"], ids=["nothing", "one newline"])
def test_fault_stream_unterminated_ends_the_stream_in_the_last_event(
    client: httpx.Client, mm: Emulator, ending: str
) -> None:
    mm.add_fault({"kind": "stream_unterminated", "ending": ending})
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        raw = response.read()
    events = raw.split(b"\n\n")
    assert len(events) >= 3 and not raw.endswith(b"\n\n")
    assert raw.endswith(b"}" + ending.encode())
    last = json.loads(events[-1].removeprefix(b"data: "))
    assert last["data"]["status"] == 2 and last["extra_info"]["audio_size"] > 0


@pytest.mark.parametrize("exclude", [True, False], ids=["excluded", "aggregated"])
def test_fault_stream_tail_moves_the_last_piece_into_the_final_event(
    client: httpx.Client, mm: Emulator, exclude: bool
) -> None:
    mm.add_fault({"kind": "stream_tail"})
    body = t2a_body(stream=True, stream_options={"exclude_aggregated_audio": exclude})
    with client.stream("POST", "/v1/t2a_v2", json=body) as response:
        *chunks, final = sse_events(response)
    sent = b"".join(bytes.fromhex(c["data"]["audio"]) for c in chunks)
    last = bytes.fromhex(final["data"]["audio"])
    [made] = mm.stats()["audio"]
    whole = sent + last if exclude else last
    assert (len(whole), hashlib.sha256(whole).hexdigest()) == (made["size"], made["sha256"])
    assert final["data"]["status"] == 2 and final["extra_info"]["audio_size"] == len(whole)
    assert len(chunks) >= 1 and 0 < len(sent) < len(whole) and whole.startswith(sent)
    mp3.frames(last)  # whole frames


def test_fault_stream_json_answers_a_stream_request_with_one_body(
    client: httpx.Client, mm: Emulator
) -> None:
    mm.add_fault({"kind": "stream_json"})
    body = t2a_body(stream=True, stream_options={"exclude_aggregated_audio": True})
    response = client.post("/v1/t2a_v2", json=body)
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    whole = audio_of(payload)
    assert mm.stats()["audio"] == [
        {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    ]
    assert payload["data"]["status"] == 2 and payload["extra_info"]["audio_size"] == len(whole)
    assert payload["trace_id"] and mp3.duration_ms(whole) > 0
    assert mm.state.faults.pending() == 0


def test_fault_lie_can_omit_a_field(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "lie", "omit": ["audio_length"], "times": 2})
    assert "audio_length" not in t2a(client)["extra_info"]
    with client.stream("POST", "/v1/t2a_v2", json=t2a_body(stream=True)) as response:
        final = sse_events(response)[-1]
    assert final["data"]["status"] == 2
    assert "audio_length" not in final["extra_info"] and final["extra_info"]["audio_size"]


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "reply"},
        {"kind": "lie"},
        {"kind": "lie", "extra_info": "audio_length"},
        {"kind": "audio_bytes"},
        {"kind": "audio_bytes", "hex": 12},
        {"kind": "stream_event"},
        {"kind": "lie", "omit": "audio_length"},
        {"kind": "stream_unterminated", "ending": "\n\n"},
    ],
)
def test_reply_fault_rules_need_their_options(mm: Emulator, rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        mm.add_fault(rule)


def test_t2a_faults_skip_other_endpoints(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "lie", "audio_length": 1})
    assert code_of(client.post("/v1/get_voice", json={"voice_type": "all"}).json()) == 0
    assert mm.state.faults.pending() == 1


@pytest.mark.parametrize(
    "kind", ["stream_break", "stream_unterminated", "stream_tail", "stream_json"]
)
def test_stream_faults_skip_non_streaming_requests(
    client: httpx.Client, mm: Emulator, kind: str
) -> None:
    mm.add_fault({"kind": kind})
    audio_of(t2a(client))
    assert mm.state.faults.pending() == 1


def test_fault_times_endpoint_and_order(client: httpx.Client, mm: Emulator) -> None:
    mm.add_fault({"kind": "base_resp", "code": 1039, "endpoint": "get_voice"})
    mm.add_fault({"kind": "base_resp", "code": 1002, "endpoint": "t2a_v2", "times": 2})
    mm.add_fault({"kind": "base_resp", "code": 1000, "endpoint": "*"})
    assert [code_of(t2a(client)) for _ in range(4)] == [1002, 1002, 1000, 0]
    assert code_of(client.post("/v1/get_voice", json={"voice_type": "all"}).json()) == 1039


def test_fault_forever_until_reset(client: httpx.Client, mm: Emulator) -> None:
    response = client.post(
        "/_emulator/faults", json=[{"kind": "http", "status": 503, "times": None}]
    )
    assert response.json()["added"] == 1
    assert [client.post("/v1/t2a_v2", json=t2a_body()).status_code for _ in range(3)] == [503] * 3
    client.post("/_emulator/reset")
    audio_of(t2a(client))


def test_bad_fault_rule_is_refused(client: httpx.Client, mm: Emulator) -> None:
    assert client.post("/_emulator/faults", json={"kind": "explode"}).status_code == 400
    with pytest.raises(ValueError):
        mm.add_fault({"kind": "http", "endpoint": "nowhere"})


# --- voice cloning ------------------------------------------------------------------


def test_clone_flow_and_get_voice(client: httpx.Client) -> None:
    uploaded = upload(client, wav_file(12))
    assert code_of(uploaded) == 0
    file = uploaded["file"]
    assert file["purpose"] == "voice_clone" and file["filename"] == "sample.wav"
    assert isinstance(file["file_id"], int) and file["bytes"] > 0
    clone = client.post(
        "/v1/voice_clone", json={"file_id": file["file_id"], "voice_id": "Ada_Lagos01"}
    )
    assert clone.json() == {
        "demo_audio": "",
        "input_sensitive": False,
        "input_sensitive_type": 0,
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }

    def cloned() -> list[str]:
        voices = client.post("/v1/get_voice", json={"voice_type": "all"}).json()
        assert any(v["voice_id"] == "English_Graceful_Lady" for v in voices["system_voice"])
        assert voices["voice_generation"] == []
        return [v["voice_id"] for v in voices["voice_cloning"]]

    assert cloned() == []  # not listed until used in a real synthesis
    audio_of(t2a(client, voice_setting={"voice_id": "Ada_Lagos01"}))
    assert cloned() == ["Ada_Lagos01"]
    deleted = client.post(
        "/v1/delete_voice", json={"voice_type": "voice_cloning", "voice_id": "Ada_Lagos01"}
    )
    assert code_of(deleted.json()) == 0
    assert cloned() == []
    assert code_of(t2a(client, voice_setting={"voice_id": "Ada_Lagos01"})) == 2042
    again = client.post(
        "/v1/voice_clone", json={"file_id": file["file_id"], "voice_id": "Ada_Lagos01"}
    )
    assert code_of(again.json()) == 2039  # a deleted id is never reusable


def test_clone_rules(client: httpx.Client) -> None:
    file_id = upload(client, mp3_file(15), "sample.mp3")["file"]["file_id"]

    def clone(**body: Any) -> int:
        return code_of(client.post("/v1/voice_clone", json={"file_id": file_id, **body}).json())

    assert clone(voice_id="Good_Voice1") == 0
    assert clone(voice_id="Good_Voice1") == 2039
    assert clone(voice_id="English_CalmWoman") == 2039
    for bad in ("short1", "1Starts_digit", "Ends_with_", "Has space1", "x" * 257):
        assert clone(voice_id=bad) == 2013, bad
    assert clone(voice_id="Preview_Voice", text="Hello") == 2013  # text needs a model
    orphan = {"file_id": 12345, "voice_id": "Orphan_Voice"}
    assert code_of(client.post("/v1/voice_clone", json=orphan).json()) == 20132
    preview = client.post(
        "/v1/voice_clone",
        json={
            "file_id": file_id,
            "voice_id": "Preview_Voice",
            "text": "Hello",
            "model": "speech-02-hd",
        },
    ).json()
    mp3.frames(httpx.get(preview["demo_audio"]).content)


def test_a_preview_is_billed_in_extra_info(client: httpx.Client, mm: Emulator) -> None:
    file_id = upload(client, wav_file(12))["file"]["file_id"]
    body = {
        "file_id": file_id,
        "voice_id": "Billed_Voice1",
        "text": "Hello from Lagos.",
        "model": "speech-02-hd",
    }
    reply = client.post("/v1/voice_clone", json=body).json()
    assert reply["extra_info"] == {"usage_characters": 17}
    assert mm.stats()["characters"] == 17


def cloned_ids(client: httpx.Client) -> list[str]:
    listed = client.post("/v1/get_voice", json={"voice_type": "voice_cloning"}).json()
    return [v["voice_id"] for v in listed["voice_cloning"]]


@pytest.mark.parametrize(
    ("rule", "failure"),
    [
        ({"then": "disconnect"}, httpx.RemoteProtocolError),
        ({}, httpx.RemoteProtocolError),
        ({"then": "http", "status": 504}, 504),
        ({"then": "base_resp", "code": 1001}, 1001),
        ({"then": "timeout", "seconds": 1.0}, httpx.ReadTimeout),
    ],
    ids=["disconnect", "default", "5xx", "1001", "timeout"],
)
def test_a_lost_clone_reply_leaves_the_clone_made(
    client: httpx.Client, mm: Emulator, rule: dict[str, Any], failure: Any
) -> None:
    file_id = upload(client, wav_file(12))["file"]["file_id"]
    mm.add_fault({"kind": "clone_lost", **rule})
    mm.add_fault({"endpoint": "t2a_v2", "kind": "clone_lost"})  # never matches t2a
    body = {"file_id": file_id, "voice_id": "Lost_Reply1", "text": "Hi.", "model": "speech-02-hd"}
    if isinstance(failure, int):
        reply = client.post("/v1/voice_clone", json=body)
        assert (reply.status_code if failure < 1000 else code_of(reply.json())) == failure
    else:
        with pytest.raises(failure):
            client.post("/v1/voice_clone", json=body, timeout=0.3)
    assert mm.stats()["characters"] == 3, "the preview was made and billed"
    assert code_of(client.post("/v1/voice_clone", json=body).json()) == 2039
    assert cloned_ids(client) == []  # made, but listed only after its first synthesis
    audio_of(t2a(client, voice_setting={"voice_id": "Lost_Reply1"}))
    assert cloned_ids(client) == ["Lost_Reply1"]


@pytest.mark.parametrize(
    ("shape", "flags"),
    [
        ("bool", {"input_sensitive": True, "input_sensitive_type": 3}),
        ("object", {"input_sensitive": {"type": 3}}),
    ],
)
def test_a_sensitive_sample_is_flagged_and_not_cloned(
    client: httpx.Client, mm: Emulator, shape: str, flags: dict[str, Any]
) -> None:
    file_id = upload(client, wav_file(12))["file"]["file_id"]
    mm.add_fault({"kind": "sensitive", "type": 3, "shape": shape})
    body = {"file_id": file_id, "voice_id": "Flagged_Voice1"}
    reply = client.post("/v1/voice_clone", json=body).json()
    assert reply == {
        "demo_audio": "",
        **flags,
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }
    assert code_of(t2a(client, voice_setting={"voice_id": "Flagged_Voice1"})) == 2042


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(402, "insufficient_balance_error"), (422, "unprocessable_entity_error")],
)
def test_http_402_and_422_carry_minimax_s_error_envelope(
    client: httpx.Client, mm: Emulator, status: int, error_type: str
) -> None:
    mm.add_fault({"kind": "http", "status": status})
    response = client.post("/v1/t2a_v2", json=t2a_body())
    assert response.status_code == status and len(response.headers["Trace-Id"]) == 32
    error = response.json()["error"]
    assert error["type"] == error_type and error["http_code"] == str(status)
    assert error["message"] and "code" not in error
    mm.add_fault(
        {
            "kind": "http",
            "status": 429,
            "envelope": True,
            "code": 2056,
            "message": "usage limit exceeded",
        }
    )
    enveloped = client.post("/v1/t2a_v2", json=t2a_body())
    assert enveloped.json() == {
        "error": {
            "type": "rate_limit_error",
            "http_code": "429",
            "message": "usage limit exceeded",
            "code": 2056,
        }
    }


@pytest.mark.parametrize(
    "rule", [{"kind": "clone_lost", "then": "explode"}, {"kind": "sensitive", "shape": "string"}]
)
def test_clone_fault_options_are_checked(mm: Emulator, rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        mm.add_fault(rule)


def test_upload_length_and_type_rules(client: httpx.Client) -> None:
    assert code_of(upload(client, wav_file(5))) == 2037
    assert code_of(upload(client, mp3_file(301), "long.mp3")) == 2037
    assert code_of(upload(client, wav_file(12), "sample.ogg")) == 2013
    assert code_of(upload(client, b"RIFF not really", "broken.wav")) == 2013
    named = upload(client, wav_file(11), 'Adaọ́ "quoted".WAV')
    assert code_of(named) == 0 and named["file"]["filename"] == 'Adaọ́ "quoted".WAV'
    not_multipart = client.post("/v1/files/upload", json={"purpose": "voice_clone"})
    assert code_of(not_multipart.json()) == 2013
    no_file = client.post("/v1/files/upload", data={"purpose": "voice_clone"}, files={"x": b"1"})
    assert code_of(no_file.json()) == 2013


# --- stats, config, concurrency -------------------------------------------------------


def test_stats_count_requests_and_timestamps(client: httpx.Client, mm: Emulator) -> None:
    before = time.time()
    made = [audio_of(t2a(client)) for _ in range(3)]
    client.post("/v1/get_voice", json={"voice_type": "system"})
    stats = client.get("/_emulator/stats").json()
    assert stats == mm.stats()
    assert stats["requests"] == {
        "t2a_v2": 3,
        "files/upload": 0,
        "voice_clone": 0,
        "get_voice": 1,
        "delete_voice": 0,
    }
    assert len(stats["t2a_timestamps"]) == 3
    assert all(before <= t <= time.time() for t in stats["t2a_timestamps"])
    assert stats["characters"] == 3 * len(SENTENCE)
    assert stats["in_flight_max"] == 1
    assert stats["audio"] == [
        {"size": len(a), "sha256": hashlib.sha256(a).hexdigest()} for a in made
    ]


async def test_in_flight_max_and_latency(mm: Emulator) -> None:
    response = httpx.post(f"{mm.url}/_emulator/config", json={"latency_seconds": 0.3})
    assert response.json()["latency_seconds"] == 0.3
    async with httpx.AsyncClient(base_url=mm.url, headers=AUTH, timeout=10) as http:
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(http.post("/v1/t2a_v2", json=t2a_body(text="Hi.")) for _ in range(4))
        )
        elapsed = time.perf_counter() - started
    assert all(code_of(a.json()) == 0 for a in answers)
    assert 0.3 <= elapsed < 1.2  # served concurrently
    assert mm.stats()["in_flight_max"] == 4


async def test_a_call_that_outlives_a_reset_counts_in_no_later_stats(mm: Emulator) -> None:
    """A test that gives up on a call leaves the emulator serving it; whatever it
    counts when it ends must not land in the next test's stats."""
    mm.configure(latency_seconds=0.3)
    async with httpx.AsyncClient(base_url=mm.url, headers=AUTH, timeout=10) as http:
        late = asyncio.create_task(http.post("/v1/t2a_v2", json=t2a_body(text="Late.")))
        while mm.stats()["in_flight"] == 0:
            await asyncio.sleep(0.01)
        mm.reset()  # the next test begins
        assert code_of((await late).json()) == 0
    stats = mm.stats()
    assert (stats["audio"], stats["characters"], stats["in_flight"]) == ([], 0, 0)


# --- catalogue and probe --------------------------------------------------------------


def test_every_catalogue_voice_exists_in_espeak() -> None:
    names = {v.espeak for v in voices.SYSTEM_VOICES} | set(voices.CLONE_VOICES)
    assert [name for name in sorted(names) if not speech.voice_available(name)] == []


def test_probe_reads_m4a_duration() -> None:
    mvhd = b"mvhd" + b"\x00" * 12 + struct.pack(">II", 1000, 12_500)
    assert probe.duration_seconds(b"\x00\x00\x00\x6cftypM4A " + mvhd, "m4a") == 12.5
    with pytest.raises(ValueError):
        probe.duration_seconds(b"no boxes here", "m4a")


# --- background server ---------------------------------------------------------------


def test_a_background_server_serves_stops_and_restarts_on_its_port() -> None:
    stopped: list[str] = []

    async def on_stop() -> None:
        stopped.append("on_stop")

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    def app() -> web.Application:
        asyncio.get_running_loop()  # made on the server's own loop
        made = web.Application()
        made.router.add_get("/", hello)
        return made

    server = BackgroundServer(app, name="test-server", on_stop=on_stop)
    server.start()
    port = server.port
    assert server.serving and port and httpx.get(f"http://127.0.0.1:{port}/").text == "hi"
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    clash = BackgroundServer(app, name="clash", port=port)
    with pytest.raises(OSError):
        clash.start()
    assert not clash.serving and clash.loop is None
    server.stop()
    server.stop()  # twice is fine
    assert stopped == ["on_stop"] and not server.serving and server.loop is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/")
    server.start()  # the same port again
    try:
        assert server.port == port and httpx.get(f"http://127.0.0.1:{port}/").text == "hi"
    finally:
        server.stop()


# --- command line -------------------------------------------------------------------


def test_command_line_prints_url_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "minimax_emulator", "--api-key", "cli-key"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("MINIMAX_EMULATOR_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        response = httpx.post(
            f"{url}/v1/get_voice",
            json={"voice_type": "system"},
            headers={"Authorization": "Bearer cli-key"},
        )
        assert code_of(response.json()) == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
