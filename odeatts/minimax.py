"""MiniMax T2A v2 over httpx: one client, one place where MiniMax's failures become ours.

MiniMax answers most errors with HTTP 200 and a non-zero ``base_resp.status_code``;
real HTTP errors and broken bodies happen too. Every one of them is mapped here to
an ``OdeaError`` (``_BASE_RESP`` is the whole table), retried with bounded
exponential backoff when the code says a retry can help, and logged with MiniMax's
trace id. Neither our MiniMax key nor the caller's text is ever logged.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from odeatts.errors import (
    ContentRejected,
    InvalidRequest,
    OdeaError,
    ServiceUnavailable,
    UpstreamBusy,
    UpstreamRejected,
    UpstreamUnavailable,
    VoiceNotFound,
)

__all__ = [
    "MiniMaxClient",
    "MiniMaxError",
    "Speech",
    "SpeechParams",
    "StreamEnd",
    "map_base_resp",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpeechParams:
    text: str
    voice_id: str
    model: str
    speed: float = 1.0
    pitch: int = 0
    volume: float = 1.0
    emotion: str | None = None
    sample_rate: int = 32000
    bitrate: int = 128000
    format: str = "mp3"
    language_boost: str | None = None

    def body(self) -> dict[str, Any]:
        voice: dict[str, Any] = {"voice_id": self.voice_id, "speed": self.speed,
                                 "vol": self.volume, "pitch": self.pitch}
        if self.emotion:
            voice["emotion"] = self.emotion
        body: dict[str, Any] = {
            "model": self.model,
            "text": self.text,
            "stream": False,
            "voice_setting": voice,
            "audio_setting": {"sample_rate": self.sample_rate, "bitrate": self.bitrate,
                              "format": self.format, "channel": 1},
            "output_format": "hex",
        }
        if self.language_boost:
            body["language_boost"] = self.language_boost
        return body


@dataclass(frozen=True, slots=True)
class Speech:
    audio: bytes
    duration_ms: int
    sample_rate: int
    format: str
    billed_characters: int | None
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The final event of a stream: what MiniMax says it made (and bills)."""

    duration_ms: int
    sample_rate: int
    format: str
    billed_characters: int | None
    trace_id: str | None


class MiniMaxError(Exception):
    """One failed attempt: the error to surface and whether another attempt may help."""

    def __init__(self, error: OdeaError, *, retry: bool, busy: bool = False) -> None:
        super().__init__(error.message)
        self.error, self.retry, self.busy = error, retry, busy


def _retry(_: int, msg: str) -> MiniMaxError:
    return MiniMaxError(UpstreamUnavailable(), retry=True)


def _busy(_: int, msg: str) -> MiniMaxError:
    return MiniMaxError(UpstreamBusy(retry_after=5.0), retry=True, busy=True)


def _window_spent(_: int, msg: str) -> MiniMaxError:
    return MiniMaxError(UpstreamBusy(retry_after=60.0), retry=False)


def _operator(code: int, msg: str) -> MiniMaxError:
    log.error("ALERT minimax account problem: code %s (%s)", code, msg[:200])
    return MiniMaxError(ServiceUnavailable(), retry=False)


def _content(_: int, msg: str) -> MiniMaxError:
    return MiniMaxError(ContentRejected(), retry=False)


def _invisible(_: int, msg: str) -> MiniMaxError:
    return MiniMaxError(InvalidRequest("`text` has too many invisible characters (over 10%).",
                                       details={"field": "text"}), retry=False)


def _params(_: int, msg: str) -> MiniMaxError:
    # We validate every field we send; what MiniMax still refuses is a caller's value
    # it dislikes in combination (an emotion the model lacks, a language_boost).
    return MiniMaxError(InvalidRequest("The speech provider refused a parameter: " + msg[:200],
                                       details={"field": "input"}), retry=False)


def _voice(code: int, msg: str) -> MiniMaxError:
    log.error("ALERT voice not available at minimax: code %s (%s)", code, msg[:200])
    return MiniMaxError(VoiceNotFound("This voice is not available right now.",
                                      details={"upstream_code": code}), retry=False)


def _rejected(code: int, msg: str) -> MiniMaxError:
    return MiniMaxError(UpstreamRejected(details={"upstream_code": code}), retry=False)


# The whole table of MiniMax status codes (minimax-api.md) -> our errors. Codes not
# listed (clone validation, unknown ones) are upstream_rejected.
_BASE_RESP: dict[int, Callable[[int, str], MiniMaxError]] = {
    **dict.fromkeys((1000, 1001, 1013, 1024, 1033), _retry),
    **dict.fromkeys((1002, 1039, 1041, 2045), _busy),
    2056: _window_spent,
    **dict.fromkeys((1004, 1008, 2049), _operator),
    **dict.fromkeys((1026, 1027), _content),
    1042: _invisible,
    2013: _params,
    **dict.fromkeys((2042, 20132), _voice),
}


def map_base_resp(code: int, msg: str) -> MiniMaxError:
    return _BASE_RESP.get(code, _rejected)(code, msg)


Sleep = Callable[[float], Awaitable[None]]
# Called before each retry: waits for (or refuses) a slot under our account's limits.
RetryGate = Callable[[], Awaitable[None]]


class MiniMaxClient:
    """Calls MiniMax. ``http`` is injected: the network edge is the test seam."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        group_id: str | None = None,
        max_retries: int = 2,
        retry_base_seconds: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._params = {"GroupId": group_id} if group_id else None
        self._max_retries = max_retries
        self._retry_base = retry_base_seconds
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def synthesize(self, params: SpeechParams, *, request_id: str,
                         retry_gate: RetryGate | None = None) -> Speech:
        body = await self._call("/v1/t2a_v2", params.body(), request_id=request_id,
                                retry_gate=retry_gate)
        return _speech(body, params.format)

    async def stream(self, params: SpeechParams, *, request_id: str,
                     retry_gate: RetryGate | None = None) -> AsyncIterator[bytes | StreamEnd]:
        """SSE synthesis: audio chunks as MiniMax makes them, then one ``StreamEnd``.

        A failure before the first chunk is retried like any call; after it, the
        stream is broken and the error surfaces (the caller has partial audio).
        """
        attempt = 0
        while True:
            delivered = False
            try:
                async for item in self._stream_once(params, request_id):
                    delivered = True
                    yield item
                return
            except MiniMaxError as failure:
                if delivered or not failure.retry or attempt >= self._max_retries:
                    raise failure.error from failure
                await self._backoff(attempt, failure, retry_gate)
                attempt += 1

    async def _stream_once(self, params: SpeechParams, request_id: str
                           ) -> AsyncIterator[bytes | StreamEnd]:
        body = params.body()
        body.pop("output_format")
        body.update(stream=True, stream_options={"exclude_aggregated_audio": True})
        path = "/v1/t2a_v2"
        try:
            async with self._http.stream("POST", path, json=body, headers=self._headers,
                                         params=self._params) as response:
                trace_id = response.headers.get("Trace-Id")
                _check_http(response, path, request_id, trace_id)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # Errors before streaming come as a plain JSON body with HTTP 200.
                    await response.aread()
                    self._check_base(_json(response, path, request_id, trace_id), path,
                                     request_id, trace_id)
                    raise MiniMaxError(UpstreamUnavailable(), retry=True)
                async for event in _sse_events(response):
                    self._check_base(event, path, request_id, trace_id)
                    item = _stream_item(event, params.format, trace_id)
                    if item is not None:
                        yield item
                    if isinstance(item, StreamEnd):
                        return
        except httpx.HTTPError as exc:
            log.warning("minimax stream %s for request %s", type(exc).__name__, request_id)
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        log.warning("minimax stream ended without its final event (request %s)", request_id)
        raise MiniMaxError(UpstreamUnavailable(), retry=True)

    async def list_voices(self, voice_type: str = "all", *, request_id: str = "admin"
                          ) -> dict[str, Any]:
        """``POST /v1/get_voice``: system, cloned and designed voices of our account."""
        return await self._call("/v1/get_voice", {"voice_type": voice_type},
                                request_id=request_id)

    async def upload_file(self, filename: str, content: bytes, *, purpose: str = "voice_clone",
                          request_id: str = "admin") -> int:
        """``POST /v1/files/upload`` (multipart); returns MiniMax's file_id."""
        body = await self._call("/v1/files/upload", None, request_id=request_id,
                                files={"file": (filename, content)}, data={"purpose": purpose})
        try:
            return int(body["file"]["file_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamUnavailable() from exc

    async def clone_voice(self, *, file_id: int, voice_id: str, preview_text: str | None = None,
                          model: str | None = None, request_id: str = "admin"
                          ) -> dict[str, Any]:
        """``POST /v1/voice_clone``; a preview text is billed and needs a model."""
        payload: dict[str, Any] = {"file_id": file_id, "voice_id": voice_id}
        if preview_text:
            payload["text"] = preview_text
            if model:
                payload["model"] = model
        return await self._call("/v1/voice_clone", payload, request_id=request_id)

    async def delete_voice(self, voice_id: str, *, voice_type: str = "voice_cloning",
                           request_id: str = "admin") -> None:
        await self._call("/v1/delete_voice", {"voice_type": voice_type, "voice_id": voice_id},
                         request_id=request_id)

    async def _call(self, path: str, payload: dict[str, Any] | None, *, request_id: str,
                    retry_gate: RetryGate | None = None, **multipart: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return await self._attempt(path, payload, request_id=request_id, **multipart)
            except MiniMaxError as failure:
                if not failure.retry or attempt >= self._max_retries:
                    raise failure.error from failure
                await self._backoff(attempt, failure, retry_gate)
                attempt += 1

    async def _backoff(self, attempt: int, failure: MiniMaxError,
                       retry_gate: RetryGate | None) -> None:
        delay = self._retry_base * (4 if failure.busy else 1) * 2**attempt
        await self._sleep(delay * (0.5 + random.random()))
        if retry_gate is not None:
            await retry_gate()

    async def _attempt(self, path: str, payload: dict[str, Any] | None, *, request_id: str,
                       **multipart: Any) -> dict[str, Any]:
        try:
            response = await self._http.post(path, json=payload, headers=self._headers,
                                             params=self._params, **multipart)
        except httpx.TimeoutException as exc:
            log.warning("minimax %s timed out (request %s)", path, request_id)
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        except httpx.HTTPError as exc:
            log.warning("minimax %s transport error %s (request %s)", path,
                        type(exc).__name__, request_id)
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        trace_id = response.headers.get("Trace-Id")
        _check_http(response, path, request_id, trace_id)
        body = _json(response, path, request_id, trace_id)
        self._check_base(body, path, request_id, trace_id)
        body.setdefault("trace_id", trace_id)
        return body

    @staticmethod
    def _check_base(body: dict[str, Any], path: str, request_id: str, trace_id: str | None
                    ) -> None:
        """MiniMax answers most errors with HTTP 200: base_resp decides."""
        base = body.get("base_resp") or {}
        code = base.get("status_code")
        if code != 0:
            msg = str(base.get("status_msg", ""))
            log.warning("minimax %s base_resp %s %r (request %s, trace %s)", path, code,
                        msg[:200], request_id, trace_id or body.get("trace_id"))
            raise map_base_resp(int(code) if isinstance(code, int) else 1000, msg)


def _check_http(response: httpx.Response, path: str, request_id: str, trace: str | None) -> None:
    status = response.status_code
    if status == 200:
        return
    log.warning("minimax %s HTTP %s (request %s, trace %s)", path, status, request_id, trace)
    if status in (401, 403):
        log.error("ALERT minimax refused our credentials: HTTP %s", status)
        raise MiniMaxError(ServiceUnavailable(), retry=False)
    if status == 429:
        raise MiniMaxError(UpstreamBusy(retry_after=5.0), retry=True, busy=True)
    if status == 408 or status >= 500:
        raise MiniMaxError(UpstreamUnavailable(), retry=True)
    raise MiniMaxError(UpstreamRejected(details={"upstream_http": status}), retry=False)


def _json(response: httpx.Response, path: str, request_id: str, trace: str | None
          ) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("minimax %s sent a body that is not JSON (request %s, trace %s)",
                    path, request_id, trace)
        raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
    if not isinstance(body, dict):
        raise MiniMaxError(UpstreamUnavailable(), retry=True)
    return body


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events of JSON objects; a ``[DONE]`` terminator is tolerated."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line.strip() and data:
            payload, data = "\n".join(data), []
            if payload.strip() == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
            if isinstance(event, dict):
                yield event


def _stream_item(event: dict[str, Any], fmt: str, trace_id: str | None
                 ) -> bytes | StreamEnd | None:
    data, extra = event.get("data") or {}, event.get("extra_info")
    if data.get("status") == 2 or extra:
        extra = extra or {}
        try:
            duration_ms = int(extra["audio_length"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        return StreamEnd(duration_ms=duration_ms,
                         sample_rate=int(extra.get("audio_sample_rate") or 0),
                         format=str(extra.get("audio_format") or fmt),
                         billed_characters=_int_or_none(extra.get("usage_characters")),
                         trace_id=trace_id or event.get("trace_id"))
    try:
        return binascii.unhexlify(data.get("audio") or "") or None
    except (binascii.Error, TypeError) as exc:
        raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc


def _speech(body: dict[str, Any], fmt: str) -> Speech:
    data, extra = body.get("data") or {}, body.get("extra_info") or {}
    try:
        audio = binascii.unhexlify(data["audio"])
        duration_ms = int(extra["audio_length"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        log.warning("minimax answered success without usable audio (trace %s)",
                    body.get("trace_id"))
        raise UpstreamUnavailable() from exc
    if not audio or duration_ms <= 0:
        raise UpstreamUnavailable()
    return Speech(
        audio=audio,
        duration_ms=duration_ms,
        sample_rate=int(extra.get("audio_sample_rate") or 0),
        format=str(extra.get("audio_format") or fmt),
        billed_characters=_int_or_none(extra.get("usage_characters")),
        trace_id=body.get("trace_id"),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
