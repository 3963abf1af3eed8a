"""What the sync and async clients share: pure functions from RunPod's replies to results.

RunPod's queue API (``https://api.runpod.ai/v2/<endpoint id>``, and the SDK's local API
server with the same paths) answers every job call with ``{"id", "status", "output" |
"error"}``. Statuses: IN_QUEUE and IN_PROGRESS (ask again), COMPLETED, FAILED,
CANCELLED, TIMED_OUT. An OdeaTTS endpoint in streaming mode answers ``/runsync`` with
the list of its items, and ``/stream/<id>`` with ``{"status", "stream": [{"output":
item}, ...]}``. No I/O here: the clients send, these functions read.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx

from odeatts_client._errors import EndpointError, JobFailed, from_wire

__all__ = [
    "PENDING",
    "Speech",
    "Voice",
    "audio_chunk",
    "checked",
    "completed_output",
    "http_error",
    "reply_json",
    "result_of",
    "speech_of",
    "stream_items",
    "voices_of",
]

PENDING = ("IN_QUEUE", "IN_PROGRESS")
_ENDED = {"CANCELLED": "cancelled", "TIMED_OUT": "timed_out"}
# The fields of a speech result that Speech names; any other (timestamps, say) is kept
# in Speech.extra, so a newer endpoint's fields reach an older client.
_SPEECH_FIELDS = (
    "audio_base64",
    "audio_url",
    "url_expires_in",
    "format",
    "duration_seconds",
    "sample_rate",
    "voice",
    "characters",
    "quota",
    "request_id",
    "done",
    "chunks",
)


@dataclass(frozen=True)
class Speech:
    """A finished speech job. ``charged_seconds`` is what it took from your quota: the
    real duration of the audio (``duration_seconds``), never the estimate."""

    audio: bytes
    format: str
    duration_seconds: float
    sample_rate: int
    voice: str
    characters: int
    request_id: str
    used_seconds: float
    remaining_seconds: float
    audio_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def charged_seconds(self) -> float:
        return self.duration_seconds


@dataclass(frozen=True)
class Voice:
    name: str
    language: str
    gender: str
    kind: str
    description: str | None


def http_error(status: int, body: str, retry_after: str | None) -> EndpointError:
    """RunPod's API refused the call (a wrong RunPod key, endpoint, its own limits)."""
    wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
    return EndpointError(
        f"RunPod answered HTTP {status}: {body[:300]}", status=status, retry_after=wait
    )


def checked(response: httpx.Response) -> httpx.Response:
    """The response, or the EndpointError of an HTTP error from RunPod's API."""
    if response.is_error:
        raise http_error(response.status_code, response.text, response.headers.get("retry-after"))
    return response


def reply_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise http_error(response.status_code, response.text, None) from exc
    if not isinstance(body, dict):
        raise http_error(response.status_code, response.text, None)
    return body


def completed_output(reply: Any) -> tuple[bool, Any]:
    """(True, the output) of a finished job, (False, None) while it is pending; raises the
    error of a failed one."""
    if not isinstance(reply, dict) or not isinstance(reply.get("status"), str):
        raise JobFailed(f"RunPod sent no job status: {str(reply)[:300]}")
    status, job_id = reply["status"], reply.get("id")
    if status in PENDING:
        return False, None
    if status == "COMPLETED":
        return True, reply.get("output")
    if status == "FAILED":
        raise from_wire(reply.get("error"), request_id=job_id)
    code = _ENDED.get(status, "runpod_failed")
    raise JobFailed(f"the job ended {status}", code=code, request_id=job_id)


def _raise_if_error(item: Any, job_id: str | None) -> None:
    if isinstance(item, dict) and item.get("error"):
        raise from_wire(item["error"], request_id=job_id)


def result_of(output: Any, job_id: str | None) -> dict[str, Any]:
    """The one result of a job: an object, or (an endpoint in streaming mode) the list of
    one job's items. A streamed job's chunks are joined under ``audio_base64``."""
    items = output if isinstance(output, list) else [output]
    for item in items:
        _raise_if_error(item, job_id)
    if not items or not isinstance(items[-1], dict):
        raise JobFailed(f"the job returned no result: {str(output)[:300]}", request_id=job_id)
    result = dict(items[-1])
    chunks = [audio_chunk(item) for item in items[:-1]]
    if chunks:
        result["audio_base64"] = base64.b64encode(b"".join(chunks)).decode("ascii")
    return result


def audio_chunk(item: Any) -> bytes:
    """The audio of one stream item."""
    if not isinstance(item, dict) or not isinstance(item.get("audio_base64"), str):
        raise JobFailed(f"a stream item without audio: {str(item)[:300]}")
    return base64.b64decode(item["audio_base64"])


def speech_of(result: dict[str, Any], audio: bytes) -> Speech:
    quota = result.get("quota") or {}
    try:
        return Speech(
            audio=audio,
            format=str(result["format"]),
            duration_seconds=float(result["duration_seconds"]),
            sample_rate=int(result["sample_rate"]),
            voice=str(result["voice"]),
            characters=int(result["characters"]),
            request_id=str(result["request_id"]),
            used_seconds=float(quota.get("used_seconds", 0.0)),
            remaining_seconds=float(quota.get("remaining_seconds", 0.0)),
            audio_url=result.get("audio_url"),
            extra={k: v for k, v in result.items() if k not in _SPEECH_FIELDS},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JobFailed(f"a speech result without {exc}: {str(result)[:300]}") from exc


def stream_items(reply: Any) -> tuple[list[Any], bool]:
    """One /stream reply: its new items, and whether the job has ended (an error ends it
    with an exception)."""
    if not isinstance(reply, dict):
        raise JobFailed(f"RunPod sent no stream: {str(reply)[:300]}")
    job_id = reply.get("id")
    items = [entry.get("output") for entry in reply.get("stream") or [] if isinstance(entry, dict)]
    for item in items:
        _raise_if_error(item, job_id)
    status = reply.get("status")
    if status in PENDING:
        return items, False
    if status != "COMPLETED":
        completed_output(reply)  # raises the job's error
    return items, True


def voices_of(output: Any) -> list[Voice]:
    result = result_of(output, None)
    return [
        Voice(
            name=v["name"],
            language=v["language"],
            gender=v["gender"],
            kind=v["kind"],
            description=v.get("description"),
        )
        for v in result.get("voices", [])
    ]
