#!/usr/bin/env python3
"""Smoke-test our MiniMax client against the real service, and compare what it says
with what MiniMax documents (tests/contract/fixtures).

    MINIMAX_API_KEY=... MINIMAX_BASE_URL=https://api.minimax.io python scripts/minimax_smoke.py

Makes one short synthesis, one with a pronunciation_dict, one with text_normalization
and voice_modify, one of pcmu_wav (G.711 mu-law), one short stream and one
get_voice through our MiniMaxClient, built from the same settings as the worker
(odeatts.config.Settings, so MINIMAX_MODEL, MINIMAX_GROUP_ID and MINIMAX_TIMEOUT_SECONDS
apply too). Retries are
off: the first reply is the one worth seeing, and a retry would be billed twice. Every
raw HTTP reply is kept as it came and its shape (keys and JSON types, recursively) is
compared with the fixture of that exchange. What the docs leave open (what the final
stream event holds, whether chunks are whole MP3 frames) is printed as a note.

Exit status: 0 nothing differs, 1 something differs, 2 a call failed (or no key).
The key is never printed. Costs: about 65 billed characters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from odeatts import mp3
from odeatts.config import Settings
from odeatts.errors import OdeaError
from odeatts.minimax import MiniMaxClient, SpeechParams, StreamEnd
from scripts.contract import (
    event_kind,
    integer_problems,
    load,
    parse_sse,
    shape_diff,
    sse_text,
)

OK, DIFFERS, FAILED = 0, 1, 2
DEFAULT_TEXT = "Hello from OdeaTTS."
DEFAULT_VOICE = "English_expressive_narrator"
INTEGERS = (
    "data.status",
    "extra_info.audio_length",
    "extra_info.audio_sample_rate",
    "extra_info.audio_size",
    "extra_info.bitrate",
    "extra_info.usage_characters",
    "extra_info.audio_channel",
    "base_resp.status_code",
)


@dataclass(frozen=True)
class Raw:
    """One HTTP reply exactly as it came (body decoded from its transfer encoding)."""

    path: str
    status: int
    content_type: str
    body: bytes


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the real transport and keeps a copy of every reply."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.replies: list[Raw] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        try:
            raw = b"".join([chunk async for chunk in stream])
        finally:
            await stream.aclose()
        decoded = httpx.Response(response.status_code, headers=response.headers, content=raw)
        self.replies.append(
            Raw(
                request.url.path,
                response.status_code,
                response.headers.get("content-type", ""),
                decoded.read(),
            )
        )
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=raw,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Report:
    """What the run found; printed as it goes, the key masked in every line."""

    secrets: list[str]
    failed: bool = False
    differences: int = 0
    lines: list[str] = field(default_factory=list)

    def say(self, line: str = "") -> None:
        for secret in self.secrets:
            line = line.replace(secret, "***")
        self.lines.append(line)
        print(line, flush=True)

    def fail(self, what: str, why: str) -> None:
        self.failed = True
        self.say(f"  FAILED {what}: {why}")

    def compare(self, what: str, problems: list[str]) -> None:
        if not problems:
            self.say(f"  same   {what}")
            return
        self.differences += len(problems)
        self.say(f"  DIFFERS {what}:")
        for problem in problems:
            self.say(f"           {problem}")

    def note(self, text: str) -> None:
        self.say(f"  note   {text}")

    @property
    def status(self) -> int:
        return FAILED if self.failed else DIFFERS if self.differences else OK


def build_client(settings: Settings, recorder: Recorder) -> MiniMaxClient:
    """Our client as odeatts.connections.build_minimax builds it, with the recording
    transport and without retries."""
    http = httpx.AsyncClient(
        base_url=settings.minimax_base_url,
        transport=recorder,
        timeout=httpx.Timeout(settings.minimax_timeout_seconds, connect=3.0),
    )
    api_key = settings.minimax_api_key.get_secret_value() if settings.minimax_api_key else ""
    return MiniMaxClient(
        http,
        api_key=api_key,
        group_id=settings.minimax_group_id,
        max_retries=0,
        retry_base_seconds=settings.minimax_retry_base_seconds,
        read_timeout_seconds=settings.minimax_timeout_seconds,
    )


def speech_params(settings: Settings, text: str, voice: str) -> SpeechParams:
    """The documented request of the fixtures, with our model, voice and text."""
    audio = load("t2a_v2.success")["request"]["audio_setting"]
    return SpeechParams(
        text=text,
        voice_id=voice,
        model=settings.minimax_model,
        sample_rate=audio["sample_rate"],
        bitrate=audio["bitrate"],
        format=audio["format"],
    )


# ------------------------------------------------------------------ the calls
async def attempt(report: Report, what: str, action: Callable[[], Awaitable[str]]) -> None:
    try:
        report.say(f"  ok     {what}: {await action()}")
    except OdeaError as exc:
        report.fail(what, f"{exc.code}: {exc.message} (MiniMax's own words are in the log)")
    except Exception as exc:  # a bug or an odd transport failure: still a failed call
        report.fail(what, f"{type(exc).__name__}: {exc}")


async def pronounced(client: MiniMaxClient, params: SpeechParams) -> str:
    """A synthesis with the fixture's pronunciation_dict (the shape MiniMax documents)."""
    tone = load("t2a_v2.pronunciation")["request"]["pronunciation_dict"]["tone"]
    words = tuple((w, p) for w, _, p in (entry.partition("/") for entry in tone))
    speech = await client.synthesize(
        replace(params, pronunciations=words), request_id="smoke-pronunciation"
    )
    return f"{len(speech.audio)} bytes, {speech.duration_ms} ms, with {len(words)} entries"


async def with_options(client: MiniMaxClient, params: SpeechParams) -> str:
    """A synthesis with the fixture's text_normalization and voice_modify."""
    request = load("t2a_v2.voice_options")["request"]
    effects = tuple(request["voice_modify"].items())
    normalize = request["voice_setting"]["text_normalization"]
    speech = await client.synthesize(
        replace(params, normalize=normalize, voice_modify=effects), request_id="smoke-options"
    )
    return f"{len(speech.audio)} bytes, {speech.duration_ms} ms"


async def telephony(client: MiniMaxClient, params: SpeechParams) -> str:
    """G.711 mu-law in a WAV file (pcmu_wav) at the fixture's 8000 Hz."""
    rate = load("t2a_v2.pcmu")["request"]["audio_setting"]["sample_rate"]
    speech = await client.synthesize(
        replace(params, format="ulaw_wav", sample_rate=rate), request_id="smoke-pcmu"
    )
    return f"{len(speech.audio)} bytes of {speech.format}, {speech.duration_ms} ms"


async def run_calls(
    client: MiniMaxClient, params: SpeechParams, report: Report, recorder: Recorder
) -> dict[str, list[Raw]]:
    """Each call's raw replies, by call name."""
    raws: dict[str, list[Raw]] = {}

    async def synthesize() -> str:
        speech = await client.synthesize(params, request_id="smoke-synthesize")
        return (
            f"{len(speech.audio)} bytes of {speech.format}, {speech.duration_ms} ms, "
            f"{speech.sample_rate} Hz, {speech.billed_characters} billed characters, "
            f"trace {speech.trace_id}"
        )

    async def stream() -> str:
        chunks, end = 0, None
        size = 0
        async for item in client.stream(params, request_id="smoke-stream"):
            if isinstance(item, StreamEnd):
                end = item
            else:
                chunks, size = chunks + 1, size + len(item)
        if end is None:
            raise RuntimeError("the stream ended without a StreamEnd")
        return (
            f"{chunks} chunks, {size} bytes; end: {end.duration_ms} ms, "
            f"{end.sample_rate} Hz, {end.billed_characters} billed characters, "
            f"trace {end.trace_id}"
        )

    async def voices() -> str:
        found = await client.list_voices("all", request_id="smoke-get-voice")
        counts = {k: len(v) for k, v in found.items() if isinstance(v, list)}
        return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no lists"

    calls = (
        ("synthesis", synthesize),
        ("pronunciation", partial(pronounced, client, params)),
        ("options", partial(with_options, client, params)),
        ("pcmu", partial(telephony, client, params)),
        ("stream", stream),
        ("get_voice", voices),
    )
    for name, action in calls:
        start = len(recorder.replies)
        await attempt(report, name, action)
        raws[name] = recorder.replies[start:]
    return raws


# ------------------------------------------------------------ the comparisons
def _json(raw: Raw) -> tuple[Any, str | None]:
    try:
        return json.loads(raw.body), None
    except ValueError:
        return None, f"not JSON ({raw.content_type or 'no content type'}, {len(raw.body)} bytes)"


def _error_code(body: Any) -> int | None:
    base = body.get("base_resp") if isinstance(body, dict) else None
    code = base.get("status_code") if isinstance(base, dict) else None
    return code if isinstance(code, int) and code != 0 else None


ERROR_SHAPE = {"base_resp": {"status_code": 0, "status_msg": ""}}


def compare_json(report: Report, what: str, raw: Raw, fixture: str) -> None:
    """Compare a JSON reply with the fixture's; an error reply (documented as HTTP 200
    with a non-zero base_resp) with t2a_v2's error fixture, or else by base_resp alone."""
    if raw.status != 200:
        report.compare(what, [f"HTTP {raw.status} ({raw.content_type})"])
        return
    body, problem = _json(raw)
    if problem:
        report.compare(what, [problem])
        return
    documented, extra_keys = load(fixture)["reply"], load(fixture).get("match") != "subset"
    if _error_code(body) is not None:
        report.note(f"{what} is an error reply, base_resp.status_code {_error_code(body)}")
        if fixture.startswith("t2a_v2"):
            fixture, documented = "t2a_v2.error", load("t2a_v2.error")["reply"]
        else:
            fixture, documented, extra_keys = "base_resp only", ERROR_SHAPE, False
    report.compare(
        f"{what} ({fixture})",
        shape_diff(documented, body, extra_keys=extra_keys) + integer_problems(body, INTEGERS),
    )


def compare_stream(report: Report, raw: Raw) -> None:
    fixture = load("t2a_v2.stream")
    if "text/event-stream" not in raw.content_type:
        body, _ = _json(raw)
        if _error_code(body) is None:  # errors before streaming are documented as JSON
            report.compare(
                "stream reply",
                [
                    f"{raw.content_type or 'no content type'} where "
                    f"{fixture['reply_content_type']} is documented"
                ],
            )
        compare_json(report, "stream reply (one JSON body)", raw, "t2a_v2.success")
        return
    try:
        events = parse_sse(raw.body.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        report.compare("stream reply", [f"events that are not JSON: {exc}"])
        return
    documented = parse_sse(sse_text(fixture))
    kinds = [event_kind(e) for e in events]
    order = (
        []
        if kinds and kinds[-1] == "final" and kinds.count("final") == 1
        else [
            f"event kinds {dict(Counter(kinds))}; one final event (data.status 2), last, "
            "is documented"
        ]
    )
    report.compare("stream: one final event, last", order)
    for kind, example in (("chunk", documented[0]), ("final", documented[-1])):
        found: Counter[str] = Counter()
        mine = [e for e in events if event_kind(e) == kind]
        for event in mine:
            found.update(set(shape_diff(example, event) + integer_problems(event, INTEGERS)))
        report.compare(
            f"stream {kind} events ({len(mine)}, t2a_v2.stream.sse)",
            [f"{p} (in {n} of {len(mine)})" for p, n in sorted(found.items())],
        )
    note_stream(report, events)


def _audio(event: Any) -> bytes:
    data = event.get("data") if isinstance(event, dict) else None
    audio = data.get("audio") if isinstance(data, dict) else None
    try:
        return bytes.fromhex(audio) if isinstance(audio, str) else b""
    except ValueError:
        return b""


def note_stream(report: Report, events: list[Any]) -> None:
    """What the docs leave open, as this stream shows it."""
    chunks = [_audio(e) for e in events if event_kind(e) == "chunk"]
    finals = [e for e in events if event_kind(e) == "final"]
    sent = b"".join(chunks)
    if finals:
        tail = _audio(finals[-1])
        extra = finals[-1].get("extra_info") or {}
        what = (
            "empty"
            if not tail
            else "the whole audio again"
            if tail == sent
            else f"{len(tail)} bytes not sent before"
        )
        report.note(
            f"with exclude_aggregated_audio the final event's data.audio is {what}; "
            f"chunks {len(sent)} bytes, final {len(tail)} bytes, "
            f"extra_info.audio_size {extra.get('audio_size')}"
        )
    whole = sum(map(_whole_frames, chunks))
    report.note(f"{whole} of {len(chunks)} chunks are whole MP3 frames on their own")


def _whole_frames(chunk: bytes) -> bool:
    """Whether ``chunk`` starts on an MP3 frame and ends where a frame ends."""
    try:
        mp3.frames(chunk)  # a whole file: nothing but whole frames
    except mp3.Mp3Error:
        return False
    return True


def compare(report: Report, raws: dict[str, list[Raw]]) -> None:
    report.say("Shapes against tests/contract/fixtures:")
    documented = (
        ("synthesis", "t2a_v2.success"),
        ("pronunciation", "t2a_v2.pronunciation"),
        ("options", "t2a_v2.voice_options"),
        ("pcmu", "t2a_v2.pcmu"),
        ("get_voice", "get_voice"),
    )
    for name, fixture in documented:
        for raw in raws[name] or []:
            compare_json(report, f"{name} reply", raw, fixture)
        if not raws[name]:
            report.note(f"no {name} reply to compare")
    for raw in raws["stream"]:
        compare_stream(report, raw)
    if not raws["stream"]:
        report.note("no stream reply to compare")


# ------------------------------------------------------------------------ main
async def smoke(settings: Settings, text: str, voice: str) -> int:
    report = Report(secrets=settings.secret_values())
    if settings.minimax_api_key is None:
        report.fail("setup", "MINIMAX_API_KEY is not set")
        return report.status
    report.say(
        f"MiniMax smoke test: {settings.minimax_base_url}, model "
        f"{settings.minimax_model}, voice {voice} (key set, not shown)"
    )
    recorder = Recorder(httpx.AsyncHTTPTransport())
    client = build_client(settings, recorder)
    try:
        raws = await run_calls(client, speech_params(settings, text, voice), report, recorder)
    finally:
        await client.aclose()
    compare(report, raws)
    verdict = {
        OK: "nothing differs from the fixtures",
        DIFFERS: f"{report.differences} difference(s) from the fixtures",
        FAILED: "a call failed",
    }[report.status]
    report.say(f"Result: {verdict} (exit {report.status})")
    return report.status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--voice", default=DEFAULT_VOICE, help="a system voice id")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="what to say (keep it short)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="log: %(message)s")
    try:
        settings = Settings()
    except ValueError as exc:
        message, key = str(exc), os.environ.get("MINIMAX_API_KEY", "")
        print(
            "error: the settings are not valid: "
            + (message.replace(key, "***") if key else message),
            file=sys.stderr,
        )
        return FAILED
    return asyncio.run(smoke(settings, args.text, args.voice))


if __name__ == "__main__":
    sys.exit(main())
