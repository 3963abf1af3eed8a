"""POST /v1/t2a_v2: validate, synthesize with espeak-ng, answer like MiniMax.

Why: this is the endpoint the worker lives on. Order of checks: parameters
(2013), invisible characters (1042), voice id (2042), format the emulator
can produce (1000 for flac and the global-only formats). Then the configured
latency is served (non-streaming: latency_seconds + per_char_latency_seconds
x characters before answering; streaming: latency_seconds before the first
event and the per-character part spread over the events, plus
chunk_delay_seconds between events), synthesis runs in a worker thread so
the event loop keeps serving, and the answer goes out as JSON or SSE.
With subtitle_enable the reply's data carries subtitle_file, the URL of a
JSON file the emulator serves (minimax_emulator/subtitles.py); a stream's
final event carries it too (an assumption: MiniMax documents subtitles for
replies only). A lie or audio_bytes fault rule, if one matched, alters that answer; a
stream_json rule answers a stream request with the non-streaming reply, and a
stream_tail rule moves the last audio piece into the final event.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from minimax_emulator.faults import FaultRule
from minimax_emulator.protocol import ApiError, base_resp, json_response, read_json
from minimax_emulator.speech import FORMATS, Synthesis, synthesize
from minimax_emulator.state import EPOCH_KEY, FAULT_KEY, STATE_KEY, TRACE_KEY, EmulatorState
from minimax_emulator.streaming import Pacing, pieces, stream_events
from minimax_emulator.subtitles import subtitle_file
from minimax_emulator.textinfo import apply_tone, invisible_ratio, usage_characters, word_count
from minimax_emulator.validation import T2ARequest, parse_t2a

__all__ = ["CONTENT_TYPES", "hosted_url", "t2a_v2"]

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "pcm": "application/octet-stream",
    "pcmu_raw": "audio/basic",
    "pcmu_wav": "audio/wav",
}


def hosted_url(request: web.Request, token: str) -> str:
    """Where the emulator serves a hosted file, as the client reaches it."""
    return f"{request.scheme}://{request.host}/_emulator/files/{token}"


def _check(state: EmulatorState, req: T2ARequest) -> tuple[str, float]:
    """The espeak voice and invisible ratio, or the ApiError MiniMax would give."""
    ratio = invisible_ratio(req.text)
    if ratio > 0.1:
        raise ApiError(1042, "invisible character ratio exceeds limit (more than 10% of the text)")
    voice = state.voices.espeak_voice(req.voice_id)
    if voice is None:
        raise ApiError(2042, "voice id not exist or no access")
    if req.format not in FORMATS:
        raise ApiError(1000, f"emulator: {req.format} not supported")
    return voice, ratio


def _synthesize(req: T2ARequest, voice: str) -> Synthesis:
    """Blocking synthesis of a validated request (run in a thread)."""
    return synthesize(
        apply_tone(req.text, list(req.tone)),
        voice,
        speed=req.speed,
        vol=req.vol,
        pitch=req.pitch,
        emotion=req.emotion,
        sample_rate=req.sample_rate,
        bitrate=req.bitrate,
        fmt=req.format,
        channels=req.channel,
    )


def _extra_info(req: T2ARequest, synthesis: Synthesis, ratio: float) -> dict[str, Any]:
    return {
        "audio_length": synthesis.duration_ms,
        "audio_sample_rate": synthesis.sample_rate,
        "audio_size": synthesis.size,
        "bitrate": req.bitrate,
        "word_count": word_count(req.text),
        "invisible_character_ratio": ratio,
        "usage_characters": usage_characters(req.text),
        "audio_format": synthesis.format,
        "audio_channel": synthesis.channels,
    }


def _lie(info: dict[str, Any], rule: FaultRule | None) -> dict[str, Any]:
    """extra_info as a lie fault would have it (unchanged without one)."""
    if rule is None or rule.kind != "lie":
        return info
    told = dict(rule.get("extra_info") or {})
    if "audio_length" in rule.options:
        told["audio_length"] = rule.get("audio_length")
    omitted = set(rule.get("omit") or ())
    return {k: v for k, v in {**info, **told}.items() if k not in omitted}


def _forced_audio(rule: FaultRule | None) -> str | None:
    """The verbatim data.audio of an audio_bytes fault, if one matched."""
    return rule.get("hex") if rule is not None and rule.kind == "audio_bytes" else None


def _pacing(state: EmulatorState, req: T2ARequest, events: int) -> Pacing:
    settings = state.settings
    per_char = settings.per_char_latency_seconds * usage_characters(req.text)
    return Pacing(settings.latency_seconds, per_char / max(events, 1), settings.chunk_delay_seconds)


async def _stream(
    request: web.Request,
    state: EmulatorState,
    req: T2ARequest,
    synthesis: Synthesis,
    info: dict[str, Any],
) -> web.StreamResponse:
    trace_id = request[TRACE_KEY]
    rule = request.get(FAULT_KEY)
    forced = _forced_audio(rule)
    audio = [p.hex() for p in pieces(synthesis)] if forced is None else [forced]
    whole = synthesis.audio.hex() if forced is None else forced
    kind = rule.kind if rule is not None else None
    if kind == "stream_json":  # the whole reply at once, as if stream were false
        return json_response(_reply(whole, info, trace_id), trace_id)
    last = ""
    if kind == "stream_tail":  # kept back from the chunks, for the final event
        last = audio.pop()
    final = _reply(last if req.exclude_aggregated_audio else whole, info, trace_id)
    final["data"].update(_subtitles(request, state, req, synthesis))
    pacing = _pacing(state, req, len(audio))
    return await stream_events(request, audio, final, trace_id, pacing, rule)


def _reply(audio: str, info: dict[str, Any], trace_id: str) -> dict[str, Any]:
    """A success with all its facts: the non-streaming reply, or a stream's final event."""
    return {
        "data": {"audio": audio, "status": 2},
        "extra_info": info,
        "trace_id": trace_id,
        "base_resp": base_resp(),
    }


def _audio_field(
    request: web.Request, state: EmulatorState, req: T2ARequest, synthesis: Synthesis
) -> str:
    forced = _forced_audio(request.get(FAULT_KEY))
    if forced is not None:
        return forced
    if req.output_format == "hex":
        return synthesis.audio.hex()
    token = state.hosted.put(synthesis.audio, CONTENT_TYPES[synthesis.format])
    return hosted_url(request, token)


def _subtitles(
    request: web.Request, state: EmulatorState, req: T2ARequest, synthesis: Synthesis
) -> dict[str, str]:
    """``{"subtitle_file": url}`` when subtitles were asked for, else nothing."""
    if not req.subtitle_enable:
        return {}
    body = subtitle_file(req.text, synthesis.duration_ms, req.subtitle_type)
    return {"subtitle_file": hosted_url(request, state.hosted.put(body, "application/json"))}


async def t2a_v2(request: web.Request) -> web.StreamResponse:
    """The /v1/t2a_v2 handler (auth and faults are handled by the middleware)."""
    state: EmulatorState = request.app[STATE_KEY]
    req = parse_t2a(await read_json(request))
    voice, ratio = _check(state, req)
    if not req.stream:
        pacing = _pacing(state, req, 1)
        await asyncio.sleep(pacing.first + pacing.each)
    synthesis = await asyncio.to_thread(_synthesize, req, voice)
    state.voices.mark_used(req.voice_id)
    state.stats.billed(usage_characters(req.text), request[EPOCH_KEY])
    state.stats.made(synthesis.audio, req.tone, request[EPOCH_KEY])
    info = _lie(_extra_info(req, synthesis, ratio), request.get(FAULT_KEY))
    if req.stream:
        return await _stream(request, state, req, synthesis, info)
    trace_id = request[TRACE_KEY]
    payload = _reply(_audio_field(request, state, req, synthesis), info, trace_id)
    payload["data"].update(_subtitles(request, state, req, synthesis))
    return json_response(payload, trace_id)
