"""Voice cloning endpoints: files/upload, voice_clone, get_voice, delete_voice.

Why: the business relies on cloned voices (e.g. Nigerian English), so the
worker's clone workflow must run against the same rules MiniMax enforces:
upload limits (mp3/m4a/wav, <= 20 MB, 10 s - 5 min -> 2037), voice_id rules
(2013), unknown file (20132), an id can never be reused (2039), and a clone is
listed by get_voice only after its first real synthesis. Faults can lose the
reply of a clone that was made (clone_lost) or flag the sample (sensitive).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from minimax_emulator.faults import FaultRule
from minimax_emulator.formdata import parse_form
from minimax_emulator.probe import EXTENSIONS, duration_seconds
from minimax_emulator.protocol import ApiError, base_resp, json_response, message_for, read_json
from minimax_emulator.speech import synthesize
from minimax_emulator.state import EPOCH_KEY, FAULT_KEY, STATE_KEY, TRACE_KEY, EmulatorState
from minimax_emulator.t2a import CONTENT_TYPES, hosted_url
from minimax_emulator.textinfo import usage_characters
from minimax_emulator.validation import MODELS, invalid

__all__ = ["VOICE_ID", "delete_voice", "get_voice", "upload", "voice_clone"]

MAX_UPLOAD = 20 * 1024 * 1024
VOICE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{6,254}[A-Za-z0-9]")
VOICE_TYPES = frozenset({"system", "voice_cloning", "voice_generation", "all"})


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


async def _file_field(request: web.Request) -> tuple[str, bytes, str]:
    """(purpose, bytes, filename) from the multipart form."""
    try:
        form = parse_form(await request.read(), request.headers.get("Content-Type", ""))
    except ValueError as exc:
        raise invalid("the body must be multipart/form-data") from exc
    purpose, file = form.get("purpose"), form.get("file")
    if purpose is None or purpose.data not in (b"voice_clone", b"prompt_audio"):
        raise invalid("purpose must be voice_clone or prompt_audio")
    if file is None or file.filename is None:
        raise invalid("file is required")
    return purpose.data.decode(), file.data, file.filename or "upload"


def _check_length(purpose: str, seconds: float) -> None:
    if purpose == "voice_clone" and seconds < 10:
        raise ApiError(2037, "voice clone audio too short: it must be at least 10 seconds")
    if purpose == "voice_clone" and seconds > 300:
        raise ApiError(2037, "voice clone audio too long: it must be at most 5 minutes")
    if purpose == "prompt_audio" and seconds >= 8:
        raise ApiError(2048, "prompt audio too long: it must be shorter than 8 seconds")


async def upload(request: web.Request) -> web.Response:
    """POST /v1/files/upload (multipart: purpose, file)."""
    purpose, data, filename = await _file_field(request)
    extension = filename.rsplit(".", 1)[-1].lower()
    if extension not in EXTENSIONS:
        raise invalid("file must be mp3, m4a or wav")
    if len(data) > MAX_UPLOAD:
        raise invalid("file must be at most 20 MB")
    try:
        seconds = duration_seconds(data, extension)
    except ValueError as exc:
        raise invalid(f"file is not readable audio ({exc})") from exc
    _check_length(purpose, seconds)
    stored = _state(request).voices.add_file(data, filename, purpose, seconds)
    file = {
        "file_id": stored.file_id,
        "bytes": len(data),
        "created_at": stored.created_at,
        "filename": filename,
        "purpose": purpose,
    }
    return json_response({"file": file, "base_resp": base_resp()}, request[TRACE_KEY])


def _clone_request(body: Any) -> tuple[int, str, str]:
    """(file_id, voice_id, preview text) from a voice_clone body, or ApiError 2013."""
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    file_id, voice_id, text = body.get("file_id"), body.get("voice_id"), body.get("text") or ""
    if isinstance(file_id, str) and file_id.isdigit():
        file_id = int(file_id)
    if not isinstance(file_id, int) or isinstance(file_id, bool):
        raise invalid("file_id is required and must be an integer")
    if not isinstance(voice_id, str) or not VOICE_ID.fullmatch(voice_id):
        raise invalid(
            "voice_id must be 8-256 characters, start with a letter, use letters, "
            "digits, - and _, and not end with - or _"
        )
    if not isinstance(text, str) or len(text) > 1000:
        raise invalid("text must be a string of at most 1000 characters")
    if text and body.get("model") not in MODELS:
        raise invalid("model is required when text is given")
    return file_id, voice_id, text


def _flagged(rule: FaultRule) -> dict[str, Any]:
    """The reply to a sample a sensitive fault flags: success, but no clone."""
    kind = int(rule.get("type", 1))
    flag: dict[str, Any] = (
        {"input_sensitive": {"type": kind}}
        if rule.get("shape", "bool") == "object"
        else {"input_sensitive": True, "input_sensitive_type": kind}
    )
    return {"demo_audio": "", **flag, "base_resp": base_resp()}


async def _lost(request: web.Request, rule: FaultRule, payload: dict[str, Any]) -> web.Response:
    """The clone exists, but its reply does not arrive as it should."""
    then = rule.get("then", "disconnect")
    if then == "http":
        status = int(rule.get("status", 502))
        return web.Response(
            status=status, text=f"<html><body>{status}</body></html>", content_type="text/html"
        )
    if then == "base_resp":
        code = int(rule.get("code", 1000))
        raise ApiError(code, rule.get("msg") or message_for(code))
    if then == "timeout":
        await asyncio.sleep(float(rule.get("seconds", 30.0)))
        return json_response(payload, request[TRACE_KEY])
    if request.transport is not None:
        request.transport.abort()
    return web.Response()


async def voice_clone(request: web.Request) -> web.Response:
    """POST /v1/voice_clone: make a clone from an uploaded file.

    A preview text is synthesised with the clone and billed (``extra_info``; MiniMax's
    reference says the preview is billed there, the field name is t2a_v2's).
    """
    state = _state(request)
    rule = request.get(FAULT_KEY)
    file_id, voice_id, text = _clone_request(await read_json(request))
    stored = state.voices.file(file_id)
    if stored is None:
        raise ApiError(20132, "invalid samples or voice_id: file_id not found")
    if state.voices.is_taken(voice_id):
        raise ApiError(2039, "voice clone voice id duplicate")
    if rule is not None and rule.kind == "sensitive":
        return json_response(_flagged(rule), request[TRACE_KEY])
    clone = state.voices.add_clone(voice_id, stored)
    payload: dict[str, Any] = {
        "demo_audio": "",
        "input_sensitive": False,
        "input_sensitive_type": 0,
    }
    if text:
        synthesis = await asyncio.to_thread(synthesize, text, clone.espeak)
        payload["demo_audio"] = hosted_url(
            request, state.hosted.put(synthesis.audio, CONTENT_TYPES["mp3"])
        )
        payload["extra_info"] = {"usage_characters": usage_characters(text)}
        state.stats.billed(usage_characters(text), request[EPOCH_KEY])
    payload["base_resp"] = base_resp()
    if rule is not None and rule.kind == "clone_lost":
        return await _lost(request, rule, payload)
    return json_response(payload, request[TRACE_KEY])


def _voice_lists(state: EmulatorState, voice_type: str) -> dict[str, Any]:
    lists: dict[str, Any] = {}
    if voice_type in ("system", "all"):
        lists["system_voice"] = [
            # The documented example gives system voices a created_time of the epoch.
            {
                "voice_id": v.voice_id,
                "voice_name": v.voice_name,
                "description": [],
                "created_time": "1970-01-01",
            }
            for v in state.voices.system_voices()
        ]
    if voice_type in ("voice_cloning", "all"):
        lists["voice_cloning"] = [
            {"voice_id": c.voice_id, "description": [], "created_time": c.created_time}
            for c in state.voices.listed_clones()
        ]
    if voice_type in ("voice_generation", "all"):
        lists["voice_generation"] = []
    return lists


async def get_voice(request: web.Request) -> web.Response:
    """POST /v1/get_voice: the voices of the requested type (only those keys are present)."""
    body = await read_json(request)
    voice_type = body.get("voice_type") if isinstance(body, dict) else None
    if voice_type not in VOICE_TYPES:
        raise invalid(f"voice_type must be one of {sorted(VOICE_TYPES)}")
    payload = {**_voice_lists(_state(request), voice_type), "base_resp": base_resp()}
    return json_response(payload, request[TRACE_KEY])


async def delete_voice(request: web.Request) -> web.Response:
    """POST /v1/delete_voice: remove a clone (its id stays unusable)."""
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("voice_type") not in (
        "voice_cloning",
        "voice_generation",
    ):
        raise invalid("voice_type must be voice_cloning or voice_generation")
    voice_id = body.get("voice_id")
    clone = _state(request).voices.delete_clone(voice_id) if isinstance(voice_id, str) else None
    if clone is None:
        raise invalid("voice_id does not exist")
    payload = {
        "voice_id": clone.voice_id,
        "created_time": str(clone.created_at),  # the documented example: "1728962464"
        "base_resp": base_resp(),
    }
    return json_response(payload, request[TRACE_KEY])
