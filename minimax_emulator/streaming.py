"""Server-Sent Events for `"stream": true` t2a requests.

Why: MiniMax streams audio as `data: {json}\\n\\n` events: intermediate
events carry a hex piece of audio with data.status 1, the final event has
data.status 2, extra_info and (unless exclude_aggregated_audio) the whole
audio again. MP3 is cut at frame boundaries, about half a second per event
and never fewer than two events when there are two frames, so a client that
plays or concatenates pieces gets valid audio. This module also carries out
the stream_break / stream_error / stream_event / stream_unterminated faults,
which only make sense mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from minimax_emulator.faults import FaultRule
from minimax_emulator.protocol import base_resp, message_for
from minimax_emulator.speech import SAMPLE_BYTES, Synthesis
from odeatts import mp3

__all__ = ["Pacing", "pieces", "stream_events"]

PIECE_SECONDS = 0.5


@dataclass(frozen=True)
class Pacing:
    """Waits: before the first event, before every event, and between events."""

    first: float = 0.0
    each: float = 0.0
    between: float = 0.0


def pieces(synthesis: Synthesis) -> list[bytes]:
    """The audio cut into ~0.5 s pieces (MP3 at frame boundaries, PCM and μ-law at
    sample boundaries)."""
    seconds = min(PIECE_SECONDS, synthesis.duration_ms / 2000)
    if synthesis.format == "mp3":
        return mp3.split(synthesis.audio, seconds)
    step = SAMPLE_BYTES.get(synthesis.format, 2) * synthesis.channels
    size = max(step, int(synthesis.sample_rate * seconds) * step)
    audio = synthesis.audio
    return [audio[i : i + size] for i in range(0, len(audio), size)] or [b""]


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _chunk(piece: str, trace_id: str) -> dict[str, Any]:
    return {
        "data": {"audio": piece, "status": 1},
        "trace_id": trace_id,
        "base_resp": base_resp(0, ""),
    }


async def _send_pieces(
    resp: web.StreamResponse, audio: list[str], trace_id: str, pacing: Pacing
) -> None:
    await asyncio.sleep(pacing.first)
    for index, piece in enumerate(audio):
        await asyncio.sleep(pacing.each + (pacing.between if index else 0.0))
        await resp.write(_event(_chunk(piece, trace_id)))


async def _fail(
    request: web.Request, resp: web.StreamResponse, rule: FaultRule, trace_id: str
) -> None:
    """Finish the stream the way a stream_break / stream_error fault says."""
    if rule.kind == "stream_break":
        if request.transport is not None:
            request.transport.abort()
        return
    code = int(rule.get("code", 1000))
    payload = {
        "data": None,
        "trace_id": trace_id,
        "base_resp": base_resp(code, rule.get("msg") or message_for(code)),
    }
    await resp.write(_event(payload))
    await resp.write_eof()


async def _send_all(
    request: web.Request,
    resp: web.StreamResponse,
    audio: list[str],
    final: dict[str, Any],
    trace_id: str,
    pacing: Pacing,
    fault: FaultRule | None,
) -> None:
    if fault is not None and fault.kind in ("stream_break", "stream_error"):
        await _send_pieces(resp, audio[: int(fault.get("after_chunks", 2))], trace_id, pacing)
        await _fail(request, resp, fault, trace_id)
        return
    if fault is not None and fault.kind == "stream_event":
        split = int(fault.get("after_chunks", 2))
        await _send_pieces(resp, audio[:split], trace_id, pacing)
        await resp.write(b"data: " + json.dumps(fault.get("event")).encode() + b"\n\n")
        audio = audio[split:]
    await _send_pieces(resp, audio, trace_id, pacing)
    if fault is not None and fault.kind == "stream_unterminated":
        # The SSE spec lets the end of the stream end the last event: no blank line.
        last = _event(final)[: -len(b"\n\n")] + str(fault.get("ending", "")).encode()
        await resp.write(last)
    else:
        await resp.write(_event(final))
    await resp.write_eof()


async def stream_events(
    request: web.Request,
    audio: list[str],
    final: dict[str, Any],
    trace_id: str,
    pacing: Pacing,
    fault: FaultRule | None = None,
) -> web.StreamResponse:
    """Send the hex audio pieces then the final event (or the fault) as SSE."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Trace-Id": trace_id,
        }
    )
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away mid-stream
        await _send_all(request, resp, audio, final, trace_id, pacing, fault)
    return resp
