"""Every call's logic once, without I/O (sans-IO): a flow is a generator that yields the
HTTP requests and pauses it needs and is sent the responses. ``Client`` runs flows with
httpx.Client and time.sleep, ``AsyncClient`` with httpx.AsyncClient and asyncio.sleep:
the polling, the throttle retries, the local server's POST-only /status and the stream
loop are written here alone.
"""

from __future__ import annotations

import base64
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from odeatts_client._config import Config
from odeatts_client._errors import EndpointError, Throttled
from odeatts_client._protocol import (
    Speech,
    audio_chunk,
    checked,
    completed_output,
    reply_json,
    result_of,
    speech_of,
    stream_items,
)

__all__ = [
    "Chunk",
    "Flow",
    "Send",
    "Session",
    "Sleep",
    "result_flow",
    "speech_flow",
    "speech_input",
    "stream_flow",
    "usage_input",
    "voices_input",
]


@dataclass(frozen=True)
class Send:
    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Chunk:
    audio: bytes


# Yields what to do; is sent the response of a Send (None after a Sleep or a Chunk).
Flow = Generator[Send | Sleep | Chunk, httpx.Response | None, Any]


@dataclass
class Session:
    """A client's settings and what it learned: /status and /stream are GET on RunPod;
    the SDK's local server answers GET with 405 and takes POST."""

    config: Config
    ask_method: str = "GET"


def _post(session: Session, path: str, body: Any, params: Any = None) -> Flow:
    headers = session.config.headers()
    kwargs = {"json": body, "params": params, "headers": headers}
    response = yield Send("POST", session.config.url(path), kwargs)
    assert response is not None
    return reply_json(checked(response))


def _ask(session: Session, path: str) -> Flow:
    """GET, or POST once GET was refused with 405 (then always POST)."""
    url, kwargs = session.config.url(path), {"headers": session.config.headers()}
    response = yield Send(session.ask_method, url, kwargs)
    assert response is not None
    try:
        return reply_json(checked(response))
    except EndpointError as exc:
        if exc.status != 405 or session.ask_method == "POST":
            raise
    session.ask_method = "POST"
    response = yield Send("POST", url, kwargs)
    assert response is not None
    return reply_json(checked(response))


def _once(session: Session, job_input: dict[str, Any], deadline: float) -> Flow:
    config = session.config
    params = config.runsync_params(deadline)
    reply = yield from _post(session, "runsync", config.body(job_input), params)
    job_id = reply.get("id")
    pause = config.poll_interval
    while not (finished := completed_output(reply))[0]:
        config.check(deadline, str(job_id))
        yield Sleep(pause)
        pause = config.next_poll(pause)
        reply = yield from _ask(session, f"status/{job_id}")
    return result_of(finished[1], job_id)


def result_flow(session: Session, job_input: dict[str, Any]) -> Flow:
    """One job's result: /runsync, polled on /status while pending; a throttled job sent
    again after its retry_after, as far as the caller's limits allow."""
    deadline = session.config.deadline()
    attempt = 0
    while True:
        try:
            return (yield from _once(session, job_input, deadline))
        except Throttled as exc:
            yield Sleep(session.config.retry_wait(exc, attempt, deadline))
            attempt += 1


def speech_flow(session: Session, job_input: dict[str, Any]) -> Flow:
    """A Speech, its audio inline or fetched from its presigned URL WITHOUT RunPod's key
    (it must not leave for the storage)."""
    result = yield from result_flow(session, job_input)
    if isinstance(result.get("audio_base64"), str):
        return speech_of(result, base64.b64decode(result["audio_base64"]))
    response = yield Send("GET", str(result.get("audio_url")), {"headers": {}})
    assert response is not None
    return speech_of(result, checked(response).content)


def stream_flow(session: Session, job_input: dict[str, Any]) -> Flow:
    """/run, then /stream until the job ends: yields Chunks, returns the final metadata
    (a Speech without audio) or None."""
    config = session.config
    deadline = config.deadline()
    job_id = (yield from _post(session, "run", config.body(job_input)))["id"]
    final: Speech | None = None
    pause = config.poll_interval
    while True:
        items, ended = stream_items((yield from _ask(session, f"stream/{job_id}")))
        for item in items:
            if isinstance(item, dict) and item.get("done"):
                final = speech_of(item, b"")
            else:
                yield Chunk(audio_chunk(item))
        if ended:
            return final
        config.check(deadline, job_id)
        if not items:
            yield Sleep(pause)
            pause = config.next_poll(pause)


def speech_input(text: str, voice: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"text": text, "voice": voice, **options}


def voices_input(language: str | None, gender: str | None) -> dict[str, Any]:
    filters = {k: v for k, v in (("language", language), ("gender", gender)) if v}
    return {"action": "voices", **filters}


def usage_input(limit: int | None) -> dict[str, Any]:
    return {"action": "usage", **({"limit": limit} if limit else {})}
