"""The emulator against MiniMax's documented exchanges (tests/contract/fixtures).

Each fixture's request goes to the running emulator over real HTTP, and its reply must
have the documented shape (same keys, same JSON types, at every level; values may
differ) and the documented units. So the emulator, which every other test trusts,
cannot drift from the docs unnoticed.

The emulator once differed from the docs in three ways (no input_sensitive_type in a
clone reply, no created_time on system voices, delete_voice's created_time as a date);
these checks found them and now hold it to the documented shapes.
"""

from __future__ import annotations

import array
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import lameenc
import pytest

from minimax_emulator import Emulator
from odeatts import mp3
from odeatts.audio import duration_ms
from scripts.contract import (
    FIXTURES,
    event_kind,
    integer_problems,
    load,
    parse_sse,
    shape_diff,
    sse_text,
)
from tests.conftest import EMULATOR_KEY

SUCCESS = load("t2a_v2.success")
STREAM = load("t2a_v2.stream")
AGGREGATED = load("t2a_v2.stream_aggregated")
REPLY_INTEGERS = (
    "data.status",
    "extra_info.audio_length",
    "extra_info.audio_sample_rate",
    "extra_info.audio_size",
    "extra_info.bitrate",
    "extra_info.word_count",
    "extra_info.usage_characters",
    "extra_info.audio_channel",
    "base_resp.status_code",
)
# MP3 encoder delay and last-frame padding; milliseconds, not seconds (that would be 1000x).
PADDING_MS = 250


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emu.url, timeout=30.0, headers={"Authorization": f"Bearer {EMULATOR_KEY}"}
    ) as client:
        yield client


def post(http: httpx.Client, fixture: dict[str, Any], **changes: Any) -> httpx.Response:
    body = {**fixture["request"], **changes}
    response = http.post(fixture["endpoint"], json=body)
    assert response.status_code == 200, response.text
    return response


def expect_units(extra: dict[str, Any], request: dict[str, Any], audio: bytes) -> None:
    """extra_info in the documented units, describing ``audio`` made for ``request``."""
    settings = request["audio_setting"]
    assert abs(extra["audio_length"] - duration_ms(audio, "mp3", 16000)) <= PADDING_MS
    assert extra["audio_size"] == len(audio)  # bytes
    assert extra["audio_sample_rate"] == settings["sample_rate"]  # Hz
    assert extra["bitrate"] == settings["bitrate"]  # bits per second
    assert (extra["audio_format"], extra["audio_channel"]) == ("mp3", settings["channel"])
    assert extra["usage_characters"] > 0


# ------------------------------------------------------------------------ t2a_v2
def test_a_synthesis_reply_has_the_documented_shape_and_units(http: httpx.Client) -> None:
    response = post(http, SUCCESS)
    body = response.json()
    assert shape_diff(SUCCESS["reply"], body) == []
    assert integer_problems(body, REPLY_INTEGERS) == []
    assert body["data"]["status"] == 2 and body["base_resp"]["status_code"] == 0
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert response.headers["Trace-Id"] == body["trace_id"]
    expect_units(body["extra_info"], SUCCESS["request"], bytes.fromhex(body["data"]["audio"]))


def test_an_invalid_parameter_is_the_documented_error_reply(http: httpx.Client) -> None:
    fixture = load("t2a_v2.error")
    body = post(http, fixture).json()
    assert shape_diff(fixture["reply"], body) == []
    assert body["base_resp"]["status_code"] == fixture["reply"]["base_resp"]["status_code"]


@pytest.mark.parametrize("name", ["t2a_v2.voice_options", "t2a_v2.pcmu"])
def test_the_documented_options_are_answered_as_documented(http: httpx.Client, name: str) -> None:
    fixture = load(name)
    body = post(http, fixture).json()
    assert shape_diff(fixture["reply"], body) == []
    assert integer_problems(body, REPLY_INTEGERS) == []
    assert body["base_resp"]["status_code"] == 0
    settings = fixture["request"]["audio_setting"]
    assert body["extra_info"]["audio_sample_rate"] == settings["sample_rate"]
    assert body["extra_info"]["audio_format"] == settings["format"]


def test_a_pronunciation_dict_is_read_and_its_wrong_shape_refused(http: httpx.Client) -> None:
    fixture = load("t2a_v2.pronunciation")
    body = post(http, fixture).json()
    assert shape_diff(fixture["reply"], body) == []
    wrong = [{"tone": "a-de-ba-yo", "text": "Adebayo"}]  # MiniMax-AI/cli #187, refused
    for dictionary in (wrong, {"tone": ["Adebayo"]}, {"tone": ["/a-de-ba-yo"]}):
        refused = post(http, fixture, pronunciation_dict=dictionary).json()
        assert refused["base_resp"]["status_code"] == 2013, dictionary


def stream_events(http: httpx.Client, fixture: dict[str, Any]) -> list[Any]:
    response = post(http, fixture)
    assert response.headers["content-type"].startswith(fixture["reply_content_type"])
    return parse_sse(response.text)


def expect_stream_shape(fixture: dict[str, Any], events: list[Any]) -> None:
    documented = parse_sse(sse_text(fixture))
    chunk, final = documented[0], documented[-1]
    assert [event_kind(e) for e in events] == ["chunk"] * (len(events) - 1) + ["final"]
    assert len(events) >= 2
    for event in events[:-1]:
        assert shape_diff(chunk, event) == []
        assert integer_problems(event, REPLY_INTEGERS) == []
    assert shape_diff(final, events[-1]) == []
    assert integer_problems(events[-1], REPLY_INTEGERS) == []


def test_a_stream_has_the_documented_events(http: httpx.Client) -> None:
    events = stream_events(http, STREAM)
    expect_stream_shape(STREAM, events)
    audio = b"".join(bytes.fromhex(e["data"]["audio"]) for e in events[:-1])
    assert mp3.frames(audio)
    expect_units(events[-1]["extra_info"], STREAM["request"], audio)
    # exclude_aggregated_audio: the final event does not repeat the audio.
    assert events[-1]["data"]["audio"] != audio.hex()


def test_a_stream_by_default_repeats_all_the_audio_at_the_end(http: httpx.Client) -> None:
    events = stream_events(http, AGGREGATED)
    expect_stream_shape(AGGREGATED, events)
    audio = b"".join(bytes.fromhex(e["data"]["audio"]) for e in events[:-1])
    assert events[-1]["data"]["audio"] == audio.hex()
    expect_units(events[-1]["extra_info"], AGGREGATED["request"], audio)


# ---------------------------------------------------------------- files and voices
def sample_mp3(seconds: float = 10.5) -> bytes:
    """A silent mono MP3 long enough to clone (10 s - 5 min)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(8)
    encoder.set_in_sample_rate(8000)
    encoder.set_out_sample_rate(8000)
    encoder.set_channels(1)
    encoder.set_quality(7)
    pcm = array.array("h", bytes(2 * int(8000 * seconds)))
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


def upload(http: httpx.Client) -> httpx.Response:
    fixture = load("files_upload")
    files = {
        name: (filename, sample_mp3(), "audio/mpeg")
        for name, filename in fixture["request"]["files"].items()
    }
    response = http.post(fixture["endpoint"], data=fixture["request"]["fields"], files=files)
    assert response.status_code == 200, response.text
    return response


def clone(http: httpx.Client, fixture: str = "voice_clone.success") -> httpx.Response:
    file_id = upload(http).json()["file"]["file_id"]
    return post(http, load(fixture), file_id=file_id)


def test_an_upload_reply_has_the_documented_shape(http: httpx.Client) -> None:
    fixture = load("files_upload")
    body = upload(http).json()
    assert shape_diff(fixture["reply"], body) == []
    assert integer_problems(body, ["file.file_id", "file.bytes", "file.created_at"]) == []
    assert body["file"]["purpose"] == "voice_clone"


def test_a_clone_reply_has_the_documented_shape(http: httpx.Client) -> None:
    assert shape_diff(load("voice_clone.success")["reply"], clone(http).json()) == []


def test_a_second_clone_with_the_same_id_is_2039(http: httpx.Client) -> None:
    clone(http)
    fixture = load("voice_clone.duplicate")
    body = clone(http, "voice_clone.duplicate").json()
    assert shape_diff(fixture["reply"], body, extra_keys=False) == []
    assert body["base_resp"]["status_code"] == 2039


def voices_with_a_used_clone(http: httpx.Client) -> dict[str, Any]:
    """get_voice after a clone's first synthesis (MiniMax lists a clone only then), so
    every documented list has an element to compare."""
    clone(http)
    voice_id = load("voice_clone.success")["request"]["voice_id"]
    settings = {**SUCCESS["request"]["voice_setting"], "voice_id": voice_id}
    post(http, SUCCESS, voice_setting=settings)
    body: dict[str, Any] = post(http, load("get_voice")).json()
    assert voice_id in [v["voice_id"] for v in body["voice_cloning"]]
    return body


def test_a_voice_list_has_the_documented_shape(http: httpx.Client) -> None:
    assert shape_diff(load("get_voice")["reply"], voices_with_a_used_clone(http)) == []


def delete_reply(http: httpx.Client) -> dict[str, Any]:
    clone(http)
    body: dict[str, Any] = post(http, load("delete_voice")).json()
    return body


def test_a_delete_reply_has_the_documented_shape(http: httpx.Client) -> None:
    fixture = load("delete_voice")
    body = delete_reply(http)
    assert shape_diff(fixture["reply"], body) == []
    assert body["voice_id"] == fixture["request"]["voice_id"]


def test_a_delete_reply_gives_created_time_in_unix_seconds(http: httpx.Client) -> None:
    assert re.fullmatch(r"\d{9,11}", delete_reply(http)["created_time"])


def test_every_fixture_is_checked_here_or_marked_client_only() -> None:
    names = {p.stem for p in FIXTURES.glob("*.json")}
    client_only = {n for n in names if load(n).get("emulator") is False}
    checked = {
        "t2a_v2.success",
        "t2a_v2.error",
        "t2a_v2.pronunciation",
        "t2a_v2.voice_options",
        "t2a_v2.pcmu",
        "t2a_v2.stream",
        "t2a_v2.stream_aggregated",
        "files_upload",
        "voice_clone.success",
        "voice_clone.duplicate",
        "get_voice",
        "delete_voice",
        "t2a_v2.subtitles",
        "subtitle_file",
    }
    assert names == checked | client_only, json.dumps(sorted(names - checked - client_only))


def test_a_reply_with_subtitles_links_a_file_of_the_documented_shape(
    http: httpx.Client,
) -> None:
    fixture = load("t2a_v2.subtitles")
    body = post(http, fixture).json()
    assert shape_diff(fixture["reply"], body) == []
    entries = http.get(body["data"]["subtitle_file"]).json()
    assert shape_diff(load("subtitle_file")["reply"], entries, extra_keys=False) == []
    # Milliseconds from the start of the reply's audio, in order.
    assert entries[0]["time_begin"] == 0
    assert entries[-1]["time_end"] <= body["extra_info"]["audio_length"]
    assert all(e["time_begin"] <= e["time_end"] for e in entries)
