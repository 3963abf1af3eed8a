"""Our MiniMax client against MiniMax's documented exchanges (tests/contract/fixtures).

Every request the client sends is compared with the documented request (field names,
JSON types, nesting); every documented reply is replayed to it through
httpx.MockTransport and must become the right result. The emulator is not involved:
these fixtures come from MiniMax's documentation, not from our reading of it in code.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from odeatts.audio import duration_ms
from odeatts.errors import (
    ContentRejected,
    InvalidRequest,
    OdeaError,
    ServiceUnavailable,
    UpstreamBusy,
    VoiceNotFound,
)
from odeatts.minimax import CloneUnconfirmed, MiniMaxClient, SpeechParams, StreamEnd
from odeatts.subtitles import SubtitleFetcher
from scripts.contract import integer_problems, json_type, load, parse_sse, shape_diff, sse_text

KEY = "contract-key"
SUCCESS = load("t2a_v2.success")
ERROR = load("t2a_v2.error")
STREAM = load("t2a_v2.stream")
AGGREGATED = load("t2a_v2.stream_aggregated")
AUDIO = bytes.fromhex(SUCCESS["reply"]["data"]["audio"])
EVENTS = parse_sse(sse_text(STREAM))
CHUNKS = [bytes.fromhex(e["data"]["audio"]) for e in EVENTS[:-1]]
EXTRA = SUCCESS["reply"]["extra_info"]
TRACE = SUCCESS["reply"]["trace_id"]

# Every /v1/t2a_v2 request field the API reference documents, with its JSON type.
T2A_FIELDS = {
    "model": "string",
    "text": "string",
    "stream": "boolean",
    "output_format": "string",
    "stream_options": "object",
    "stream_options.exclude_aggregated_audio": "boolean",
    "voice_setting": "object",
    "voice_setting.voice_id": "string",
    "voice_setting.speed": "number",
    "voice_setting.vol": "number",
    "voice_setting.pitch": "number",
    "voice_setting.emotion": "string",
    "voice_setting.text_normalization": "boolean",
    "voice_setting.latex_read": "boolean",
    "audio_setting": "object",
    "audio_setting.sample_rate": "number",
    "audio_setting.bitrate": "number",
    "audio_setting.format": "string",
    "audio_setting.channel": "number",
    "audio_setting.force_cbr": "boolean",
    "pronunciation_dict": "object",
    "pronunciation_dict.tone": "array",
    "language_boost": "string",
    "subtitle_enable": "boolean",
    "subtitle_type": "string",
    "voice_modify": "object",
    "voice_modify.pitch": "number",
    "voice_modify.intensity": "number",
    "voice_modify.timbre": "number",
    "voice_modify.sound_effects": "string",
}
T2A_INTEGERS = (
    "voice_setting.pitch",
    "voice_modify.pitch",
    "voice_modify.intensity",
    "voice_modify.timbre",
    "audio_setting.sample_rate",
    "audio_setting.bitrate",
    "audio_setting.channel",
)


# --------------------------------------------------------------------- the wire
@dataclass
class Exchange:
    """A MockTransport handler: answers each path with its replies in turn (the last
    one again once they run out) and keeps every request it was sent."""

    replies: dict[str, list[httpx.Response]]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.replies[request.url.path]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def json(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def reply(
    body: Any, *, status: int = 200, content_type: str = "application/json"
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(
        status, content=content, headers={"content-type": content_type, "Trace-Id": TRACE}
    )


def sse_reply(text: str) -> httpx.Response:
    return reply(text, content_type="text/event-stream")


def answering(**replies: httpx.Response | list[httpx.Response]) -> Exchange:
    """``answering(t2a_v2=...)``: keyword = the path after /v1/ (``files_upload`` for
    files/upload)."""
    return Exchange(
        {
            f"/v1/{name.replace('files_', 'files/')}": (list(r) if isinstance(r, list) else [r])
            for name, r in replies.items()
        }
    )


async def _no_sleep(_: float) -> None:
    return None


async def call(exchange: Exchange, action: Callable[[MiniMaxClient], Any]) -> Any:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(exchange), base_url="https://api.minimax.io"
    )
    client = MiniMaxClient(http, api_key=KEY, max_retries=2, sleep=_no_sleep)
    try:
        return await action(client)
    finally:
        await client.aclose()


def params_of(request: dict[str, Any], **changes: Any) -> SpeechParams:
    voice, audio = request["voice_setting"], request["audio_setting"]
    values: dict[str, Any] = {
        "text": request["text"],
        "voice_id": voice["voice_id"],
        "model": request["model"],
        "speed": voice["speed"],
        "pitch": voice["pitch"],
        "volume": voice["vol"],
        "sample_rate": audio["sample_rate"],
        "bitrate": audio["bitrate"],
        "format": audio["format"],
    }
    return SpeechParams(**{**values, **changes})


PARAMS = params_of(SUCCESS["request"])


async def synthesize(exchange: Exchange, params: SpeechParams = PARAMS) -> Any:
    return await call(exchange, lambda c: c.synthesize(params, request_id="req-contract"))


async def stream(exchange: Exchange, params: SpeechParams = PARAMS) -> list[bytes | StreamEnd]:
    async def collect(client: MiniMaxClient) -> list[bytes | StreamEnd]:
        return [item async for item in client.stream(params, request_id="req-contract")]

    return list(await call(exchange, collect))


def leaves(body: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in body.items():
        path = f"{prefix}{key}"
        yield path, value
        if isinstance(value, dict):
            yield from leaves(value, f"{path}.")


def undocumented(body: dict[str, Any]) -> list[str]:
    """Fields of a t2a_v2 body the API reference does not have, or not with that type."""
    problems = [
        f"{path}: {json_type(value)} is not a documented field"
        for path, value in leaves(body)
        if T2A_FIELDS.get(path) != json_type(value)
    ]
    return problems + integer_problems(body, T2A_INTEGERS)


def expect_json_post(request: httpx.Request, path: str) -> None:
    assert request.method == "POST" and request.url.path == path
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert "GroupId" not in request.url.params  # only when configured


# ------------------------------------------------------------ t2a_v2, one reply
async def test_a_synthesis_sends_the_documented_request() -> None:
    exchange = answering(t2a_v2=reply(SUCCESS["reply"]))
    await synthesize(exchange)
    expect_json_post(exchange.requests[0], "/v1/t2a_v2")
    sent = exchange.json()
    assert shape_diff(SUCCESS["request"], sent) == []
    assert sent == SUCCESS["request"]
    assert undocumented(sent) == []


async def test_optional_voice_fields_go_where_the_docs_put_them() -> None:
    exchange = answering(t2a_v2=reply(SUCCESS["reply"]))
    await synthesize(
        exchange,
        params_of(
            SUCCESS["request"],
            emotion="calm",
            speed=1.25,
            volume=2.5,
            pitch=-3,
            language_boost="English",
        ),
    )
    sent = exchange.json()
    assert undocumented(sent) == []
    assert sent["voice_setting"] == {
        "voice_id": "English_expressive_narrator",
        "speed": 1.25,
        "vol": 2.5,
        "pitch": -3,
        "emotion": "calm",
    }
    assert sent["language_boost"] == "English"


async def test_pronunciations_go_as_the_documented_object_of_tone_strings() -> None:
    """Not a list of {tone, text} objects: MiniMax refuses that (MiniMax-AI/cli #187)."""
    fixture = load("t2a_v2.pronunciation")
    exchange = answering(t2a_v2=reply(fixture["reply"]))
    words = (("Adebayo", "a-de-ba-yo"), ("处理", "(chu3)(li3)"))
    await synthesize(exchange, params_of(fixture["request"], pronunciations=words))
    sent = exchange.json()
    assert sent == fixture["request"]
    assert undocumented(sent) == []


async def test_the_documented_reply_becomes_speech() -> None:
    speech = await synthesize(answering(t2a_v2=reply(SUCCESS["reply"])))
    assert speech.audio == AUDIO and speech.format == "mp3"
    # audio_length is milliseconds, charged no further than the audio bears out.
    assert speech.duration_ms == min(EXTRA["audio_length"], duration_ms(AUDIO, "mp3", 16000))
    assert speech.sample_rate == EXTRA["audio_sample_rate"] == 16000
    assert speech.billed_characters == EXTRA["usage_characters"]
    assert speech.trace_id == TRACE


async def test_the_documented_error_reply_is_the_caller_s_invalid_request() -> None:
    exchange = answering(t2a_v2=reply(ERROR["reply"]))
    with pytest.raises(InvalidRequest):
        await synthesize(exchange, params_of(ERROR["request"]))
    assert exchange.json() == ERROR["request"] and len(exchange.requests) == 1


def error_reply(code: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(ERROR["reply"]))
    body["base_resp"]["status_code"] = code
    return body


# (code, the error a caller sees, requests made): the API reference's status codes.
DOCUMENTED_CODES = [
    (1004, ServiceUnavailable, 1),
    (1008, ServiceUnavailable, 1),
    (2049, ServiceUnavailable, 1),
    (1026, ContentRejected, 1),
    (1027, ContentRejected, 1),
    (1042, InvalidRequest, 1),
    (2013, InvalidRequest, 1),
    (2042, VoiceNotFound, 1),
    (1002, UpstreamBusy, 3),
    (1039, UpstreamBusy, 3),
]


@pytest.mark.parametrize(
    ("code", "error", "requests"), DOCUMENTED_CODES, ids=[str(c[0]) for c in DOCUMENTED_CODES]
)
async def test_documented_status_codes(code: int, error: type[OdeaError], requests: int) -> None:
    exchange = answering(t2a_v2=reply(error_reply(code)))
    with pytest.raises(error):
        await synthesize(exchange)
    assert len(exchange.requests) == requests


@pytest.mark.parametrize("code", [1028, 1030, 2061])
async def test_an_account_out_of_quota_or_plan_is_an_operator_problem(code: int) -> None:
    # MiniMax-AI/cli src/errors/api.ts: 1028/1030 quota exhausted, 2061 model not in plan.
    exchange = answering(t2a_v2=reply(error_reply(code)))
    with pytest.raises(ServiceUnavailable):
        await synthesize(exchange)
    assert len(exchange.requests) == 1


async def test_a_spent_usage_window_is_not_a_short_retry() -> None:
    # 2056: "usage limit exceeded, 5-hour usage limit reached ... resets at <time>"
    # (MiniMax-AI/MiniMax-M2.7 issue 36); TTS plans also have daily quotas. A caller
    # told to come back within minutes would only meet it again.
    exchange = answering(t2a_v2=reply(error_reply(2056)))
    with pytest.raises(OdeaError) as failure:
        await synthesize(exchange)
    assert len(exchange.requests) == 1
    error = failure.value
    assert not (isinstance(error, UpstreamBusy) and (error.retry_after or 0) < 600)


async def test_http_402_with_an_error_envelope_is_an_operator_problem() -> None:
    fixture = load("t2a_v2.http402")
    exchange = answering(t2a_v2=reply(fixture["reply"], status=fixture["reply_status"]))
    with pytest.raises(ServiceUnavailable):
        await synthesize(exchange)
    assert len(exchange.requests) == 1


async def test_http_422_naming_sensitive_content_is_content_rejected() -> None:
    fixture = load("t2a_v2.http422")
    exchange = answering(t2a_v2=reply(fixture["reply"], status=fixture["reply_status"]))
    with pytest.raises(ContentRejected):
        await synthesize(exchange)
    assert len(exchange.requests) == 1


# ------------------------------------------------------------------- t2a_v2, SSE
def sse(events: list[dict[str, Any]]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events)


def expect_end(end: bytes | StreamEnd, delivered: bytes) -> None:
    assert isinstance(end, StreamEnd)
    assert end.duration_ms == min(EXTRA["audio_length"], duration_ms(delivered, "mp3", 16000))
    assert (end.sample_rate, end.format) == (16000, "mp3")
    assert end.billed_characters == EXTRA["usage_characters"] and end.trace_id == TRACE


async def test_a_stream_sends_the_documented_request() -> None:
    exchange = answering(t2a_v2=sse_reply(sse_text(STREAM)))
    await stream(exchange)
    expect_json_post(exchange.requests[0], "/v1/t2a_v2")
    sent = exchange.json()
    assert sent == STREAM["request"]  # stream true, exclude_aggregated_audio true, no url
    assert sent["stream_options"]["exclude_aggregated_audio"] is True
    assert undocumented(sent) == []


async def test_the_documented_stream_is_delivered_then_ended() -> None:
    *chunks, end = await stream(answering(t2a_v2=sse_reply(sse_text(STREAM))))
    assert chunks == CHUNKS and b"".join(CHUNKS) == AUDIO
    expect_end(end, AUDIO)


async def test_a_final_event_repeating_all_the_audio_is_not_delivered_twice() -> None:
    # The documented default: the status-2 event holds the whole audio again.
    events = parse_sse(sse_text(AGGREGATED))
    assert events[-1]["data"]["audio"] == AUDIO.hex()
    *chunks, end = await stream(answering(t2a_v2=sse_reply(sse_text(AGGREGATED))))
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == AUDIO
    expect_end(end, AUDIO)


async def test_audio_in_the_final_event_that_was_not_sent_before_is_delivered() -> None:
    # What the final event holds with exclude_aggregated_audio is undocumented; LiveKit's
    # plugin keeps any audio it carries. extra_info.audio_size says what the whole is.
    final = json.loads(json.dumps(EVENTS[-1]))
    final["data"]["audio"] = CHUNKS[-1].hex()
    *chunks, end = await stream(answering(t2a_v2=sse_reply(sse([*EVENTS[:-2], final]))))
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == AUDIO
    assert len(AUDIO) == EXTRA["audio_size"]
    expect_end(end, AUDIO)


async def test_only_status_2_ends_a_stream() -> None:
    # data.status: 1 = still synthesizing, 2 = finished. extra_info on a status-1
    # event does not end it.
    early = json.loads(json.dumps(EVENTS[0]))
    early["extra_info"] = EXTRA
    *chunks, end = await stream(answering(t2a_v2=sse_reply(sse([early, *EVENTS[1:]]))))
    assert chunks == CHUNKS
    expect_end(end, AUDIO)


async def test_a_last_event_without_its_blank_line_still_ends_the_stream() -> None:
    # MiniMax-AI/cli src/client/stream.ts flushes an event left open at the end.
    text = sse_text(STREAM).rstrip("\n")
    *chunks, end = await stream(answering(t2a_v2=sse_reply(text)))
    assert chunks == CHUNKS
    expect_end(end, AUDIO)


async def test_a_json_reply_to_a_stream_request_is_one_chunk() -> None:
    # MiniMax-AI/cli src/utils/audio-stream.ts plays a plain JSON body's data.audio.
    exchange = answering(t2a_v2=reply(SUCCESS["reply"]))
    *chunks, end = await stream(exchange)
    assert chunks == [AUDIO]
    expect_end(end, AUDIO)
    assert len(exchange.requests) == 1


async def test_a_json_error_reply_to_a_stream_request_is_that_error() -> None:
    exchange = answering(t2a_v2=reply(ERROR["reply"]))
    with pytest.raises(InvalidRequest):
        await stream(exchange)
    assert len(exchange.requests) == 1


# ------------------------------------------------------------------ voices, files
async def test_get_voice_sends_the_documented_request_and_reads_every_list() -> None:
    fixture = load("get_voice")
    exchange = answering(get_voice=reply(fixture["reply"]))
    voices = await call(exchange, lambda c: c.list_voices())
    expect_json_post(exchange.requests[0], "/v1/get_voice")
    assert exchange.json() == fixture["request"]
    documented = fixture["reply"]
    assert [v["voice_id"] for v in voices["system_voice"]] == ["English_expressive_narrator"]
    assert voices["system_voice"][0]["voice_name"] == "Expressive Narrator"
    assert voices["voice_cloning"] == documented["voice_cloning"]
    assert voices["voice_generation"] == documented["voice_generation"]


def multipart(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body: field name -> (file name, content)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    assert message.is_multipart()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts


async def test_an_upload_is_the_documented_multipart_and_gives_the_file_id() -> None:
    fixture = load("files_upload")
    exchange = answering(files_upload=reply(fixture["reply"]))
    file_id = await call(exchange, lambda c: c.upload_file("audio_sample.mp3", AUDIO))
    request = exchange.requests[0]
    assert request.method == "POST" and request.url.path == "/v1/files/upload"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart(request)
    documented = fixture["request"]
    assert parts.keys() == {*documented["fields"], *documented["files"]}
    assert parts["purpose"] == (None, b"voice_clone")
    assert parts["file"] == ("audio_sample.mp3", AUDIO)
    assert file_id == fixture["reply"]["file"]["file_id"]


async def test_a_clone_sends_the_documented_request() -> None:
    fixture = load("voice_clone.success")
    exchange = answering(voice_clone=reply(fixture["reply"]))
    request = fixture["request"]
    result = await call(
        exchange, lambda c: c.clone_voice(file_id=request["file_id"], voice_id=request["voice_id"])
    )
    expect_json_post(exchange.requests[0], "/v1/voice_clone")
    assert exchange.json() == request and integer_problems(request, ["file_id"]) == []
    assert result.demo_audio is None and result.sensitive_type is None  # "" is no preview


async def test_a_clone_with_a_preview_sends_text_and_model() -> None:
    fixture = load("voice_clone.success")
    exchange = answering(voice_clone=reply(fixture["reply"]))
    await call(
        exchange,
        lambda c: c.clone_voice(
            file_id=123456789,
            voice_id="OdeaContract01",
            preview_text="Hello.",
            model="speech-02-turbo",
        ),
    )
    assert exchange.json() == {
        "file_id": 123456789,
        "voice_id": "OdeaContract01",
        "text": "Hello.",
        "model": "speech-02-turbo",
    }


def flagged_forms(flagged: bool) -> list[dict[str, Any]]:
    """A clone reply in both documented forms: the example's bool + input_sensitive_type,
    and the schema's object with a type."""
    example = load("voice_clone.sensitive" if flagged else "voice_clone.success")["reply"]
    schema = {k: v for k, v in example.items() if k != "input_sensitive_type"}
    schema["input_sensitive"] = {"type": example["input_sensitive_type"]}
    return [example, schema]


@pytest.mark.parametrize("body", flagged_forms(False), ids=["example", "schema"])
async def test_a_clean_sample_in_either_documented_form_is_a_clone(body: dict[str, Any]) -> None:
    exchange = answering(voice_clone=reply(body))
    result = await call(exchange, lambda c: c.clone_voice(file_id=1, voice_id="OdeaContract01"))
    assert result.sensitive_type is None


@pytest.mark.parametrize("body", flagged_forms(True), ids=["example", "schema"])
async def test_a_flagged_sample_is_reported_in_either_documented_form(body: dict[str, Any]) -> None:
    """The client reports the flag; the catalogue refuses to register such a clone
    (tests/test_admin_voices.py)."""
    exchange = answering(voice_clone=reply(body))
    result = await call(exchange, lambda c: c.clone_voice(file_id=1, voice_id="OdeaContract02"))
    assert result.sensitive_type == load("voice_clone.sensitive")["reply"]["input_sensitive_type"]


async def test_a_duplicate_voice_id_fails_at_once() -> None:
    fixture = load("voice_clone.duplicate")
    exchange = answering(voice_clone=reply(fixture["reply"]))
    with pytest.raises(OdeaError):
        await call(exchange, lambda c: c.clone_voice(**fixture["request"]))
    assert exchange.paths() == ["/v1/voice_clone"]


async def test_a_clone_whose_reply_was_lost_is_not_sent_again_blindly() -> None:
    # voice_clone is not idempotent: a second one for the same id meets 2039.
    clone, duplicate = load("voice_clone.success"), load("voice_clone.duplicate")
    exchange = answering(
        voice_clone=[
            reply("<html>502</html>", status=502, content_type="text/html"),
            reply(duplicate["reply"]),
        ],
        get_voice=reply(load("get_voice")["reply"]),
    )
    with pytest.raises(CloneUnconfirmed):  # the catalogue then asks get_voice
        await call(exchange, lambda c: c.clone_voice(**clone["request"]))
    assert exchange.paths() == ["/v1/voice_clone"]


async def test_delete_voice_sends_the_documented_request() -> None:
    fixture = load("delete_voice")
    exchange = answering(delete_voice=reply(fixture["reply"]))
    await call(exchange, lambda c: c.delete_voice(fixture["request"]["voice_id"]))
    expect_json_post(exchange.requests[0], "/v1/delete_voice")
    assert exchange.json() == fixture["request"]


# --------------------------------------------------------- subtitles and options
SUBTITLES = load("t2a_v2.subtitles")
SUBTITLE_FILE = load("subtitle_file")


async def test_a_synthesis_with_subtitles_sends_the_documented_request() -> None:
    exchange = answering(t2a_v2=reply(SUBTITLES["reply"]))
    speech = await synthesize(exchange, params_of(SUBTITLES["request"], subtitles=True))
    assert exchange.json() == SUBTITLES["request"] and undocumented(exchange.json()) == []
    assert speech.subtitle_url == SUBTITLES["reply"]["data"]["subtitle_file"]


async def test_the_documented_subtitle_file_becomes_timings() -> None:
    url = SUBTITLES["reply"]["data"]["subtitle_file"]

    def cdn(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == url and "authorization" not in request.headers
        return reply(SUBTITLE_FILE["reply"])

    fetcher = SubtitleFetcher(
        httpx.AsyncClient(transport=httpx.MockTransport(cdn)),
        minimax_base_url="https://api.minimax.io",
    )
    try:
        [timing] = await fetcher.fetch(url, request_id="req-contract")
    finally:
        await fetcher.aclose()
    [entry] = SUBTITLE_FILE["reply"]
    assert (timing.text, timing.start_ms, timing.end_ms) == (
        entry["text"],
        entry["time_begin"],  # milliseconds
        entry["time_end"],
    )


async def test_normalization_and_effects_are_the_documented_request() -> None:
    fixture = load("t2a_v2.voice_options")
    exchange = answering(t2a_v2=reply(fixture["reply"]))
    effects = (("pitch", -20), ("timbre", 15), ("sound_effects", "lofi_telephone"))
    params = params_of(fixture["request"], normalize=True, voice_modify=effects)
    speech = await synthesize(exchange, params)
    assert exchange.json() == fixture["request"] and undocumented(exchange.json()) == []
    assert speech.duration_ms == fixture["reply"]["extra_info"]["audio_length"]


async def test_telephony_audio_is_the_documented_pcmu_request_and_its_reply_is_read() -> None:
    fixture = load("t2a_v2.pcmu")
    exchange = answering(t2a_v2=reply(fixture["reply"]))
    speech = await synthesize(exchange, params_of(fixture["request"], format="ulaw_wav"))
    assert exchange.json() == fixture["request"] and undocumented(exchange.json()) == []
    assert speech.audio == bytes.fromhex(fixture["reply"]["data"]["audio"])
    assert (speech.duration_ms, speech.sample_rate) == (300, 8000)


async def test_normalization_effects_and_telephony_go_where_the_docs_put_them() -> None:
    exchange = answering(t2a_v2=reply(SUCCESS["reply"]))
    params = params_of(
        SUCCESS["request"],
        normalize=True,
        voice_modify=(("pitch", -20), ("timbre", 15), ("sound_effects", "lofi_telephone")),
        model="speech-2.6-turbo",
        subtitles=True,
    )
    with pytest.raises(OdeaError):  # the reply has no subtitle file: a broken reply
        await synthesize(exchange, params)
    sent = exchange.json()
    assert undocumented(sent) == []
    assert sent["voice_setting"]["text_normalization"] is True
    assert sent["voice_modify"] == {"pitch": -20, "timbre": 15, "sound_effects": "lofi_telephone"}
    assert (sent["subtitle_enable"], sent["subtitle_type"]) == (True, "word")
    ulaw = params_of(SUCCESS["request"], format="ulaw_wav", sample_rate=8000).body()
    assert ulaw["audio_setting"]["format"] == "pcmu_wav" and undocumented(ulaw) == []
