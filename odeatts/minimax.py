"""MiniMax T2A v2 over httpx: one client, one place where MiniMax's failures become ours.

MiniMax answers most errors with HTTP 200 and a non-zero ``base_resp.status_code``;
real HTTP errors (with an ``error`` envelope in the body) and broken bodies happen
too. Every one of them is mapped here to an ``OdeaError`` by ONE table,
``UPSTREAM_FAILURES`` (code -> caller error, retry or not, operator alert or not, what
it means and where that is written), retried with bounded exponential backoff when the
row says a retry can help, and logged once with MiniMax's trace id: problems of our
account (key, balance, quota, plan) as one ERROR line ``ALERT minimax account: ...``.
Neither our MiniMax key nor the caller's text is ever logged.

``voice_clone`` is the one call never retried: it is not idempotent (see
``clone_voice``).

Every reply passes one validating boundary before anything reads it: base_resp
first (an error reply may carry ``data: null``), then the pydantic model of that
reply, strict (no "1" for 1, no true for 1), then the audio itself, which must be
the format we asked for. A reply that fails is MiniMax's failure, retried like a
5xx, never a crash of ours. What MiniMax says it made (``audio_length``) is checked
against what the bytes hold, and the smaller is charged. MiniMax's own error text
(``status_msg``) goes to the log only: it can name hosts and voice ids.

A stream is read as the SSE spec says (httpx-sse), not only as our emulator writes it,
and also takes a last event that the end of the stream cuts off, as MiniMax's CLI does.
It ends at the event whose ``data.status`` is 2, whose audio is delivered when
``extra_info.audio_size`` shows it is the rest of the audio rather than a copy. A
stream request answered with one JSON body gets that body's speech as the whole stream.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from odeatts.audio import AudioError, delivered_ms, duration_ms
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
from odeatts.logs import redact
from odeatts.resilience import Gate

__all__ = [
    "MAX_CALL_MS",
    "MINIMAX_FORMATS",
    "UPSTREAM_FAILURES",
    "WORD_SUBTITLE_MODELS",
    "CloneReply",
    "CloneUnconfirmed",
    "Failure",
    "MiniMaxClient",
    "MiniMaxError",
    "Speech",
    "SpeechParams",
    "StreamEnd",
    "failure_row",
    "map_base_resp",
]

log = logging.getLogger(__name__)

# No single call makes an hour of speech: under 10,000 characters is about 25 minutes
# even at speed 0.5. A longer audio_length is a broken reply, not a bill.
MAX_CALL_MS = 3_600_000
# How far MiniMax's audio_length may stray from our measure before we say so. MP3 adds
# encoder delay and pads the last frame (about 1,700 samples: 210 ms at 8 kHz), and
# long audio may be rounded differently; past that, the gap is worth a look.
_TOLERANCE_MS, _TOLERANCE_PERCENT = 250, 5
_LOGGED_CHARS = 200


# Our format names -> MiniMax's audio_setting.format (G.711 μ-law: pcmu, global host).
MINIMAX_FORMATS = {"ulaw": "pcmu_raw", "ulaw_wav": "pcmu_wav"}
# Models whose subtitles MiniMax can give word by word (subtitle_type "word"); the
# others give sentences. See docs/minimax.md, "Subtitles".
WORD_SUBTITLE_MODELS = frozenset({"speech-2.6-hd", "speech-2.6-turbo"})


@dataclass(frozen=True, slots=True)
class SpeechParams:
    """Every setting of one t2a_v2 request. ``body`` is the one place they become
    MiniMax's JSON (a cache of audio must key on all of them: these are all)."""

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
    normalize: bool = False
    subtitles: bool = False
    # voice_modify: (name, value) pairs in MiniMax's names (pitch, intensity, timbre,
    # sound_effects); a tuple keeps the params hashable.
    voice_modify: tuple[tuple[str, int | str], ...] = ()
    # (word, replacement) pairs, merged by schemas.merge_pronunciations.
    pronunciations: tuple[tuple[str, str], ...] = ()

    @property
    def minimax_format(self) -> str:
        return MINIMAX_FORMATS.get(self.format, self.format)

    def body(self, *, stream: bool = False) -> dict[str, Any]:
        """The request: hex audio in one reply, or (``stream``) SSE events without the
        aggregated audio repeated at the end."""
        body: dict[str, Any] = {
            "model": self.model,
            "text": self.text,
            "stream": stream,
            "voice_setting": self._voice(),
            "audio_setting": {
                "sample_rate": self.sample_rate,
                "bitrate": self.bitrate,
                "format": self.minimax_format,
                "channel": 1,
            },
        }
        if stream:
            body["stream_options"] = {"exclude_aggregated_audio": True}
        else:
            body["output_format"] = "hex"
        if self.language_boost:
            body["language_boost"] = self.language_boost
        if self.voice_modify:
            body["voice_modify"] = dict(self.voice_modify)
        if self.pronunciations:  # docs/minimax.md: an object, never a list of pairs
            body["pronunciation_dict"] = {"tone": [f"{w}/{p}" for w, p in self.pronunciations]}
        if self.subtitles:
            body["subtitle_enable"] = True
            if self.model in WORD_SUBTITLE_MODELS:
                body["subtitle_type"] = "word"
        return body

    def _voice(self) -> dict[str, Any]:
        voice: dict[str, Any] = {
            "voice_id": self.voice_id,
            "speed": self.speed,
            "vol": self.volume,
            "pitch": self.pitch,
        }
        if self.emotion:
            voice["emotion"] = self.emotion
        if self.normalize:
            voice["text_normalization"] = True
        return voice


@dataclass(frozen=True, slots=True)
class Speech:
    """One checked reply: audio of the asked format; ``duration_ms`` is what may be charged
    (MiniMax's audio_length, never more than the audio measures)."""

    audio: bytes
    duration_ms: int
    sample_rate: int
    format: str
    billed_characters: int | None
    trace_id: str | None
    measured_ms: int = 0  # what the bytes play: where the next part starts
    subtitle_url: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The final event of a stream: what MiniMax says it made (and bills), with
    ``duration_ms`` checked against what the stream delivered."""

    duration_ms: int
    sample_rate: int
    format: str
    billed_characters: int | None
    trace_id: str | None
    subtitle_url: str | None = None
    measured_ms: int = 0  # what the delivered bytes play


@dataclass(frozen=True, slots=True)
class CloneReply:
    """A voice_clone that MiniMax answered with success. ``sensitive_type`` is not None
    when MiniMax flagged the sample (then the clone must not be used);
    ``billed_characters`` is what the preview cost, when MiniMax says."""

    demo_audio: str | None
    sensitive_type: int | None
    billed_characters: int | None
    trace_id: str | None


class MiniMaxError(Exception):
    """One failed attempt: the error to surface and whether another attempt may help."""

    def __init__(self, error: OdeaError, *, retry: bool, busy: bool = False) -> None:
        super().__init__(error.message)
        self.error, self.retry, self.busy = error, retry, busy

    @property
    def ambiguous(self) -> bool:
        """MiniMax may have done what was asked although we got no answer saying so (a
        timeout, a cut connection, a 5xx, a 1000-type code, an unreadable reply): safe to
        repeat for a synthesis, NOT for a voice_clone. A busy refusal did nothing."""
        return self.retry and not self.busy


class CloneUnconfirmed(Exception):
    """voice_clone failed in a way that may have created the clone anyway (``error`` is
    what it failed with). Never retried blindly: a second voice_clone with the same id
    can only meet 2039 (id in use). Ask ``get_voice`` instead."""

    def __init__(self, error: OdeaError) -> None:
        super().__init__(error.message)
        self.error = error


# ------------------------------------------------------------- the failure table
# Where each row comes from:
#   codes    MiniMax's error-code page, platform.minimax.io/docs/api-reference/errorcode
#            (and platform.minimaxi.com's), as recorded in docs/minimax.md
#   cli      MiniMax's own CLI, MiniMax-AI/cli src/errors/api.ts (1028/1030 quota,
#            2061 plan, HTTP 402 balance, 422 unprocessable_entity_error content filter)
#   mcp#80   MiniMax-AI/MiniMax-MCP issue 80: 2056 is "5-hour usage limit reached for
#            Token Plan ..., resets at ...": a window of hours, not a short retry
#   clone    the voice clone API reference (platform.minimax.io voice-cloning-clone)
#   http     HTTP itself (RFC 9110): 408 and 5xx are the server's failure, retried
# Note: MiniMax's CLI treats 1002/1039 as a content filter; the published code list and
# every other client say rate limits. We follow the code list.
ACCOUNT, VOICE = "account", "voice"
_BUSY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Failure:
    """One row: a MiniMax status code (or, with ``http``, an HTTP status) and what it
    becomes: the caller's error, whether another attempt may help, and whether operators
    get one ``ALERT minimax <alert>:`` ERROR line (``account``: our key, balance, quota or
    plan; ``voice``: a catalogue voice MiniMax refuses)."""

    code: int
    error: type[OdeaError]
    retry: bool
    alert: str | None
    meaning: str
    source: str
    http: bool = False
    message: str | None = None  # the caller's message when the class's default will not do
    field: str | None = None  # InvalidRequest's details.field

    def failure(self, code: int) -> MiniMaxError:
        """The attempt's failure for ``code`` (a 5xx row serves every 5xx)."""
        busy = self.error is UpstreamBusy
        details: dict[str, Any] = {}
        if self.field:
            details["field"] = self.field
        if self.error in (UpstreamRejected, VoiceNotFound):
            details["upstream_http" if self.http else "upstream_code"] = code
        error = self.error(
            self.message, retry_after=_BUSY_SECONDS if busy else None, details=details
        )
        error.alert = self.alert
        return MiniMaxError(error, retry=self.retry, busy=busy)


def _row(
    code: int,
    error: type[OdeaError],
    meaning: str,
    source: str = "codes",
    *,
    retry: bool = False,
    alert: str | None = None,
    http: bool = False,
    message: str | None = None,
    field: str | None = None,
) -> Failure:
    return Failure(code, error, retry, alert, meaning, source, http, message, field)


_INVISIBLE = "`text` has too many invisible characters (over 10%)."
# We validate every field we send; what MiniMax still refuses is a caller's value it
# dislikes in combination. Its own words stay in our log: they can name hosts and ids.
_PARAMS = (
    "The speech provider refused this combination of settings; try without emotion "
    "or language_boost, or with another voice or model."
)
_VOICE = "This voice is not available right now."
_OURS = ServiceUnavailable  # our account's problem: the caller did nothing wrong

UPSTREAM_FAILURES: tuple[Failure, ...] = (
    # base_resp.status_code (HTTP 200)
    _row(1000, UpstreamUnavailable, "unknown error", retry=True),
    _row(1001, UpstreamUnavailable, "request timeout", retry=True),
    _row(1002, UpstreamBusy, "rate limit (requests per minute)", retry=True),
    _row(1004, _OURS, "not authorized / key not of this group", alert=ACCOUNT),
    _row(1008, _OURS, "insufficient balance", alert=ACCOUNT),
    _row(1013, UpstreamUnavailable, "internal service error", retry=True),
    _row(1024, UpstreamUnavailable, "internal error", retry=True),
    _row(1026, ContentRejected, "input content flagged"),
    _row(1027, ContentRejected, "output content flagged"),
    _row(1028, _OURS, "quota used up", "cli", alert=ACCOUNT),
    _row(1030, _OURS, "quota or balance used up", "cli", alert=ACCOUNT),
    _row(1033, UpstreamUnavailable, "system or downstream error", retry=True),
    _row(1039, UpstreamBusy, "rate limit (tokens per minute)", retry=True),
    _row(1041, UpstreamBusy, "connection limit", retry=True),
    _row(1042, InvalidRequest, "invisible characters over 10%", message=_INVISIBLE, field="text"),
    _row(1043, UpstreamRejected, "clone validation failed (ASR similarity)", "clone"),
    _row(1044, UpstreamRejected, "clone validation failed (prompt similarity)", "clone"),
    _row(2013, InvalidRequest, "invalid params", message=_PARAMS, field="input"),
    _row(20132, VoiceNotFound, "invalid samples or voice_id", alert=VOICE, message=_VOICE),
    _row(2037, UpstreamRejected, "clone sample too short or long (10 s-5 min)", "clone"),
    _row(2038, UpstreamRejected, "cloning needs a verified account", "clone"),
    _row(2039, UpstreamRejected, "clone voice_id already in use", "clone"),
    _row(2042, VoiceNotFound, "no access to this voice_id", alert=VOICE, message=_VOICE),
    _row(2045, UpstreamBusy, "rate growth limit (traffic spike)", retry=True),
    _row(2048, UpstreamRejected, "prompt audio too long (under 8 s)", "clone"),
    _row(2049, _OURS, "invalid API key (or another region's host)", alert=ACCOUNT),
    _row(2056, _OURS, "plan usage window (hours) spent", "mcp#80", alert=ACCOUNT),
    _row(2061, _OURS, "model not in the account's plan", "cli", alert=ACCOUNT),
    # HTTP statuses (the body, MiniMax's error envelope, is logged)
    _row(401, _OURS, "key refused", "cli", alert=ACCOUNT, http=True),
    _row(402, _OURS, "balance or quota used up", "cli", alert=ACCOUNT, http=True),
    _row(403, _OURS, "key not allowed", "cli", alert=ACCOUNT, http=True),
    _row(408, UpstreamUnavailable, "request timeout", "http", retry=True, http=True),
    _row(422, ContentRejected, "content flagged (unprocessable_entity_error)", "cli", http=True),
    _row(429, UpstreamBusy, "rate limit", "cli", retry=True, http=True),
    _row(500, UpstreamUnavailable, "server error (any 5xx)", "http", retry=True, http=True),
)
_BY_CODE = {(row.http, row.code): row for row in UPSTREAM_FAILURES}
_UNKNOWN_CODE = _row(0, UpstreamRejected, "a code this table does not know", "codes")
_UNKNOWN_HTTP = _row(
    0, UpstreamRejected, "an HTTP status this table does not know", "http", http=True
)


def failure_row(code: int, *, http: bool = False) -> Failure:
    """The table's row for a status code (``http``: an HTTP status)."""
    row = _BY_CODE.get((http, code))
    if row is None and http and code >= 500:
        row = _BY_CODE[(True, 500)]
    return row or (_UNKNOWN_HTTP if http else _UNKNOWN_CODE)


def _log_failure(row: Failure, what: str, msg: str, call: _Call | None) -> None:
    """One line per failure: ERROR with ``ALERT minimax <kind>:`` when operators must act,
    else WARNING. ``msg`` is MiniMax's text, already made safe by ``_loggable``."""
    where = f"(request {call.request_id}, trace {call.trace_id})" if call else ""
    path = call.path if call else "minimax"
    if row.alert:
        log.error(
            "ALERT minimax %s: %s %s (%s) %r %s", row.alert, path, what, row.meaning, msg, where
        )
    else:
        log.warning("minimax %s %s (%s) %r %s", path, what, row.meaning, msg, where)


def map_base_resp(code: int, msg: str, call: _Call | None = None) -> MiniMaxError:
    """Our error for a MiniMax status code, logged once; ``msg`` goes only to the log."""
    row = failure_row(code)
    _log_failure(row, f"base_resp {code}", _loggable(msg), call)
    return row.failure(code)


def _loggable(msg: str) -> str:
    """MiniMax's text as we log it: secrets masked, then cut (a cut could split a secret)."""
    return redact(msg)[:_LOGGED_CHARS]


# ---------------------------------------------------------------- reply models
class _Strict(BaseModel):
    """A documented MiniMax shape, exactly: no "1" for 1, no true for 1. Keys we do not
    know are ignored (MiniMax adds fields); keys we know must have their documented type."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _BaseResp(_Strict):
    status_code: int
    status_msg: str = ""

    @field_validator("status_msg", mode="before")
    @classmethod
    def _any_text(cls, value: Any) -> Any:
        """The message is only logged: an odd one must not hide the code, which decides."""
        return value if isinstance(value, str) else ""


class _Data(_Strict):
    audio: bytes = b""  # hex on the wire; absent or null in events without audio
    status: int | None = None
    subtitle_file: str | None = None  # a URL, with subtitle_enable

    @field_validator("audio", mode="before")
    @classmethod
    def _unhex(cls, value: Any) -> Any:
        if value is None:
            return b""
        if not isinstance(value, str):
            raise ValueError("audio is not a hex string")
        try:
            return binascii.unhexlify(value)
        except ValueError as exc:  # binascii.Error, or a non-ASCII string
            raise ValueError("audio is not hex") from exc


class _StreamInfo(_Strict):
    """extra_info of a stream's final event. Its audio_length may be missing: the audio
    the stream delivered is measured anyway, and then that is what is charged."""

    audio_length: int | None = Field(default=None, gt=0, le=MAX_CALL_MS)  # ms
    audio_sample_rate: int | None = Field(default=None, gt=0)
    audio_size: int | None = Field(default=None, ge=0)
    bitrate: int | None = None
    word_count: int | None = None
    invisible_character_ratio: float | None = None
    usage_characters: int | None = Field(default=None, ge=0)
    audio_format: str | None = None
    audio_channel: int | None = None


class _ExtraInfo(_StreamInfo):
    """extra_info of a whole reply: what MiniMax made, in ms (zero means no audio)."""

    audio_length: int = Field(gt=0, le=MAX_CALL_MS)


class _SpeechReply(_Strict):
    data: _Data
    extra_info: _ExtraInfo
    trace_id: str | None = None


class _StreamEvent(_Strict):
    data: _Data | None = None
    extra_info: _StreamInfo | None = None
    trace_id: str | None = None

    @property
    def final(self) -> bool:
        """data.status 2 is the documented end; extra_info alone is not."""
        return self.data is not None and self.data.status == 2


class _Voice(_Strict):
    voice_id: str
    voice_name: str | None = None
    description: list[Any] | None = None
    created_time: str | None = None


class _VoiceList(_Strict):
    system_voice: list[_Voice] | None = None
    voice_cloning: list[_Voice] | None = None
    voice_generation: list[Any] | None = None  # undocumented entries; we read none


class _File(_Strict):
    file_id: int


class _Upload(_Strict):
    file: _File


class _Sensitive(_Strict):
    type: int = 0


class _Clone(_Strict):
    """MiniMax's reference gives ``input_sensitive`` as an object ``{"type": 0-7}`` in its
    schema but a bool plus ``input_sensitive_type`` in its example: both are read."""

    demo_audio: str | None = None
    input_sensitive: bool | _Sensitive | None = None
    input_sensitive_type: int | None = None
    extra_info: Any = None  # the preview's billing; read apart, an odd one is ignored

    @property
    def sensitive_type(self) -> int | None:
        """None: not flagged; else MiniMax's type (0 when it flags without one)."""
        flag = self.input_sensitive
        kind = flag.type if isinstance(flag, _Sensitive) else (self.input_sensitive_type or 0)
        return kind if flag is True or kind else None


class _CloneBilling(_Strict):
    usage_characters: int | None = Field(default=None, ge=0)


M = TypeVar("M", bound=_Strict)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Call:
    """One exchange with MiniMax, named in every log line: our request, MiniMax's trace."""

    path: str
    request_id: str
    trace_id: str | None = None

    def traced(self, trace_id: Any) -> _Call:
        """The first trace id seen wins (the header, else the body's)."""
        if self.trace_id is None and isinstance(trace_id, str) and trace_id:
            return replace(self, trace_id=trace_id)
        return self


def _invalid(call: _Call, reason: str, *, retry: bool = True) -> MiniMaxError:
    """A reply that is not what MiniMax documents: its failure (retried like a 5xx)."""
    log.warning(
        "minimax %s sent an invalid reply: %s (request %s, trace %s)",
        call.path,
        reason,
        call.request_id,
        call.trace_id,
    )
    return MiniMaxError(UpstreamUnavailable(), retry=retry)


def _problems(exc: ValidationError) -> str:
    """Where and what was wrong, never the values: they can hold audio or MiniMax's text."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['type']}"
        for e in exc.errors(include_url=False, include_input=False)[:5]
    )


def _parse(model: type[M], value: Any, call: _Call, *, retry: bool = True) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _invalid(call, _problems(exc), retry=retry) from exc


def _checked(body: Any, call: _Call) -> dict[str, Any]:
    """base_resp decides success before the rest is read: an error reply may be
    ``data: null``. Returns the body of a success."""
    if not isinstance(body, dict):
        raise _invalid(call, "the body is not a JSON object")
    base = _parse(_BaseResp, body.get("base_resp"), call)
    if base.status_code != 0:
        raise map_base_resp(base.status_code, base.status_msg, call)
    return body


def _check_format(extra: _StreamInfo, params: SpeechParams, call: _Call) -> None:
    """MiniMax's audio_format names what it made: the format asked for, in its name or
    ours (which name it reports for pcmu is undocumented)."""
    told = extra.audio_format
    if told is not None and told.lower() not in (params.minimax_format, params.format):
        raise _invalid(call, f"audio_format {told[:20]!r}, not {params.minimax_format}")


def _checked_ms(claimed: int, measured: int, call: _Call) -> int:
    """What may be charged: never more than the audio holds, so the smaller figure.
    Encoder padding makes small gaps normal; a wide one is logged for a look."""
    if abs(claimed - measured) > max(_TOLERANCE_MS, measured * _TOLERANCE_PERCENT // 100):
        log.warning(
            "minimax audio_length %d ms but the audio measures %d ms; charging %d ms "
            "(request %s, trace %s)",
            claimed,
            measured,
            min(claimed, measured),
            call.request_id,
            call.trace_id,
        )
    return min(claimed, measured)


def _speech(body: dict[str, Any], call: _Call, params: SpeechParams) -> Speech:
    """A success reply of /v1/t2a_v2, validated down to its audio bytes."""
    reply = _parse(_SpeechReply, body, call)
    extra = reply.extra_info
    _check_format(extra, params, call)
    try:
        measured = duration_ms(reply.data.audio, params.format, params.sample_rate)
    except AudioError as exc:
        raise _invalid(call, f"the audio is not {params.format}: {exc}") from exc
    charged = _checked_ms(extra.audio_length, measured, call)
    return Speech(
        audio=reply.data.audio,
        duration_ms=charged,
        sample_rate=extra.audio_sample_rate or 0,
        format=params.format,
        billed_characters=extra.usage_characters,
        trace_id=call.trace_id,
        measured_ms=measured,
        subtitle_url=_subtitle_url(reply.data, params, call),
    )


def _subtitle_url(data: _Data, params: SpeechParams, call: _Call) -> str | None:
    """The subtitle file's URL when we asked for one; a reply without it is broken."""
    if not params.subtitles:
        return None
    if not data.subtitle_file:
        raise _invalid(call, "subtitle_enable was sent but data.subtitle_file is missing")
    return data.subtitle_file


def _ending(
    event: _StreamEvent, sent: bytes, call: _Call, params: SpeechParams
) -> list[bytes | StreamEnd]:
    """What the final event adds: the audio the caller has not had yet, if any, then the
    ``StreamEnd``. Checked whole before any of it is yielded."""
    extra = event.extra_info
    if extra is None:
        raise _invalid(call, "the final event has no extra_info")
    tail = _unsent(event.data.audio if event.data else b"", sent, extra.audio_size, call)
    subtitles = event.data.subtitle_file if event.data and params.subtitles else None
    end = _stream_end(extra, sent + tail, call, params, subtitles or None)
    return [tail, end] if tail else [end]


def _unsent(audio: bytes, sent: bytes, size: int | None, call: _Call) -> bytes:
    """The part of the final event's audio the stream has not delivered.

    By default MiniMax repeats all the audio in the final event. We send
    exclude_aggregated_audio, of which the docs say only that the final event then lacks
    the whole audio: empty, or a genuine tail. extra_info.audio_size (the bytes of the
    whole audio) tells a tail from a copy; without it, the audio is taken for a copy,
    unless nothing was delivered (then there is nothing it could repeat).
    """
    if not audio or not sent:
        return audio
    if size is None:
        log.debug(
            "minimax final event has %d bytes of audio and no audio_size: dropped as a "
            "copy (request %s, trace %s)",
            len(audio),
            call.request_id,
            call.trace_id,
        )
        return b""
    if len(sent) == size:
        return b""  # a copy of what was delivered
    if len(sent) + len(audio) == size:
        return audio  # the tail
    if len(audio) == size and audio.startswith(sent):
        return audio[len(sent) :]  # all the audio: the chunks fell short of it
    log.warning(
        "minimax final event's %d bytes of audio do not add up: %d delivered, "
        "audio_size %d; dropped (request %s, trace %s)",
        len(audio),
        len(sent),
        size,
        call.request_id,
        call.trace_id,
    )
    return b""


def _stream_end(
    extra: _StreamInfo,
    sent: bytes,
    call: _Call,
    params: SpeechParams,
    subtitle_url: str | None = None,
) -> StreamEnd:
    """The final event's facts, its audio_length checked against what the stream delivered
    (without one, what the delivered audio measures is charged). A stream's subtitle
    file is optional: MiniMax documents subtitles for replies, not streams."""
    _check_format(extra, params, call)
    try:
        measured = delivered_ms(sent, params.format, params.sample_rate)
    except AudioError as exc:
        raise _invalid(call, f"the stream is not {params.format}: {exc}") from exc
    if measured <= 0:
        raise _invalid(call, f"the stream delivered no {params.format} audio")
    if extra.audio_length is None:
        log.info(
            "minimax final event has no audio_length; charging the %d ms delivered "
            "(request %s, trace %s)",
            measured,
            call.request_id,
            call.trace_id,
        )
        charged = measured
    else:
        charged = _checked_ms(extra.audio_length, measured, call)
    return StreamEnd(
        duration_ms=charged,
        sample_rate=extra.audio_sample_rate or 0,
        format=params.format,
        billed_characters=extra.usage_characters,
        trace_id=call.trace_id,
        subtitle_url=subtitle_url,
        measured_ms=measured,
    )


def _voices(body: dict[str, Any], call: _Call) -> dict[str, Any]:
    reply = _parse(_VoiceList, body, call)
    return {**reply.model_dump(exclude_none=True), "trace_id": call.trace_id}


def _file_id(body: dict[str, Any], call: _Call) -> int:
    return _parse(_Upload, body, call).file.file_id


def _clone(body: dict[str, Any], call: _Call) -> CloneReply:
    """base_resp said the clone exists. An unreadable rest is an ambiguous failure (the
    caller asks get_voice), except its billing, which is only ever logged as odd."""
    reply = _parse(_Clone, body, call)
    billed = None
    if reply.extra_info is not None:
        try:
            billed = _CloneBilling.model_validate(reply.extra_info).usage_characters
        except ValidationError as exc:
            log.warning(
                "minimax %s sent odd extra_info: %s (request %s, trace %s)",
                call.path,
                _problems(exc),
                call.request_id,
                call.trace_id,
            )
    return CloneReply(
        demo_audio=reply.demo_audio or None,
        sensitive_type=reply.sensitive_type,
        billed_characters=billed,
        trace_id=call.trace_id,
    )


def _nothing(body: dict[str, Any], call: _Call) -> None:
    return None


# ---------------------------------------------------------------------- client
Sleep = Callable[[float], Awaitable[None]]
# Called before each retry: waits for (or refuses) a slot under our account's limits.
RetryGate = Callable[[], Awaitable[None]]
Reply = Callable[[dict[str, Any], _Call], T]


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
        read_timeout_seconds: float = 60.0,
        connections: int | None = None,
    ) -> None:
        """``connections``: at most this many requests at once; the others wait their
        turn here, first come first served. httpx's own pool queues them too, but scans
        every connection and every waiting request each time one is added or leaves:
        at 200 jobs in flight that was milliseconds of CPU per request (httpcore
        connection_pool.py, _assign_requests_to_connections)."""
        self._http = http
        self._gate = Gate(connections) if connections else None
        self._read_timeout = read_timeout_seconds
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._params = {"GroupId": group_id} if group_id else None
        self._max_retries = max_retries
        self._retry_base = retry_base_seconds
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    def _turn(self) -> AbstractAsyncContextManager[None]:
        return self._gate.turn() if self._gate is not None else nullcontext()

    async def warm_up(self, connections: int) -> None:
        """Open ``connections`` keep-alive connections (TCP, TLS) before the first job
        needs one: a HEAD of the API's root each, answered or not, costs MiniMax nothing.
        Best effort: failures are the first job's to meet and report."""
        await asyncio.gather(
            *(self._http.head("/", timeout=3.0) for _ in range(connections)),
            return_exceptions=True,
        )

    def _speech_timeout(self, params: SpeechParams) -> httpx.Timeout:
        """How long MiniMax may stay silent: a silent upstream must be noticed in seconds,
        while a long text legitimately takes longer to its first byte. 10 s, plus 10 ms a
        character (3,000 characters: 40 s), never more than ``read_timeout_seconds``."""
        read = min(self._read_timeout, 10.0 + len(params.text) / 100)
        return httpx.Timeout(read, connect=3.0)

    async def synthesize(
        self, params: SpeechParams, *, request_id: str, retry_gate: RetryGate | None = None
    ) -> Speech:
        return await self._call(
            _Call("/v1/t2a_v2", request_id),
            params.body(),
            lambda body, call: _speech(body, call, params),
            retry_gate=retry_gate,
            timeout=self._speech_timeout(params),
        )

    async def stream(
        self, params: SpeechParams, *, request_id: str, retry_gate: RetryGate | None = None
    ) -> AsyncIterator[bytes | StreamEnd]:
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
                await self._retry_or_raise(failure, attempt, retry_gate, broken=delivered)
                attempt += 1

    async def _stream_once(
        self, params: SpeechParams, request_id: str
    ) -> AsyncIterator[bytes | StreamEnd]:
        body = params.body(stream=True)
        call = _Call("/v1/t2a_v2", request_id)
        try:
            async with (
                self._turn(),
                self._http.stream(
                    "POST",
                    call.path,
                    json=body,
                    headers=self._headers,
                    params=self._params,
                    timeout=self._speech_timeout(params),
                ) as response,
            ):
                call = call.traced(response.headers.get("Trace-Id"))
                await _check_http(response, call)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # Errors before streaming come as a plain JSON body with HTTP 200, and
                    # so, at times, does all the speech (MiniMax's CLI plays it).
                    await response.aread()
                    for item in _whole_reply(_json(response, call), call, params):
                        yield item
                    return
                async for item in _stream_items(response, call, params):
                    yield item
                    if isinstance(item, StreamEnd):
                        return
        except httpx.HTTPError as exc:
            log.warning("minimax stream %s for request %s", type(exc).__name__, request_id)
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        raise _invalid(call, "the stream ended without its final event")

    async def list_voices(
        self, voice_type: str = "all", *, request_id: str = "admin"
    ) -> dict[str, Any]:
        """``POST /v1/get_voice``: system, cloned and designed voices of our account."""
        return await self._call(
            _Call("/v1/get_voice", request_id), {"voice_type": voice_type}, _voices
        )

    async def upload_file(
        self,
        filename: str,
        content: bytes,
        *,
        purpose: str = "voice_clone",
        request_id: str = "admin",
    ) -> int:
        """``POST /v1/files/upload`` (multipart); returns MiniMax's file_id."""
        return await self._call(
            _Call("/v1/files/upload", request_id),
            None,
            _file_id,
            files={"file": (filename, content)},
            data={"purpose": purpose},
        )

    async def clone_voice(
        self,
        *,
        file_id: int,
        voice_id: str,
        preview_text: str | None = None,
        model: str | None = None,
        request_id: str = "admin",
    ) -> CloneReply:
        """``POST /v1/voice_clone``, ONE attempt: a preview text is billed and needs a model.

        Never retried: a lost reply may hide a clone that exists, and a second call could
        only meet 2039 (id in use) and bill the preview again. A failure that may have
        created the clone raises ``CloneUnconfirmed``; any other raises its error.
        """
        payload: dict[str, Any] = {"file_id": file_id, "voice_id": voice_id}
        if preview_text:
            payload["text"] = preview_text
            if model:
                payload["model"] = model
        try:
            return await self._attempt(_Call("/v1/voice_clone", request_id), payload, _clone)
        except MiniMaxError as failure:
            if failure.ambiguous:
                raise CloneUnconfirmed(failure.error) from failure
            raise failure.error from failure

    async def delete_voice(
        self, voice_id: str, *, voice_type: str = "voice_cloning", request_id: str = "admin"
    ) -> None:
        await self._call(
            _Call("/v1/delete_voice", request_id),
            {"voice_type": voice_type, "voice_id": voice_id},
            _nothing,
        )

    async def _call(
        self,
        call: _Call,
        payload: dict[str, Any] | None,
        reply: Reply[T],
        *,
        retry_gate: RetryGate | None = None,
        **options: Any,
    ) -> T:
        """One request, retried while a retry can help; ``reply`` validates a success."""
        attempt = 0
        while True:
            try:
                return await self._attempt(call, payload, reply, **options)
            except MiniMaxError as failure:
                await self._retry_or_raise(failure, attempt, retry_gate)
                attempt += 1

    async def _retry_or_raise(
        self,
        failure: MiniMaxError,
        attempt: int,
        retry_gate: RetryGate | None,
        *,
        broken: bool = False,
    ) -> None:
        """After failed attempt number ``attempt`` (from 0): raise the caller's error unless
        another attempt may help, else wait out the backoff and pass the gate.

        The one retry rule of every retried call. ``broken``: part of the answer was
        already delivered (a stream past its first chunk), so a new attempt cannot mend
        it. The backoff doubles per attempt, is four times longer after a busy refusal
        (MiniMax asked us to slow down), and is jittered by +-50% so that workers retrying
        together spread out. The gate waits for (or refuses) a slot under our account's
        limits: a retry is a new call to MiniMax.
        """
        if broken or not failure.retry or attempt >= self._max_retries:
            raise failure.error from failure
        delay = self._retry_base * (4 if failure.busy else 1) * 2**attempt
        await self._sleep(delay * (0.5 + random.random()))
        if retry_gate is not None:
            await retry_gate()

    async def _attempt(
        self, call: _Call, payload: dict[str, Any] | None, reply: Reply[T], **options: Any
    ) -> T:
        """``options`` go to httpx as they are (multipart ``files``/``data``, ``timeout``)."""
        try:
            async with self._turn():
                response = await self._http.post(
                    call.path, json=payload, headers=self._headers, params=self._params, **options
                )
        except httpx.TimeoutException as exc:
            log.warning("minimax %s timed out (request %s)", call.path, call.request_id)
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        except httpx.HTTPError as exc:
            log.warning(
                "minimax %s transport error %s (request %s)",
                call.path,
                type(exc).__name__,
                call.request_id,
            )
            raise MiniMaxError(UpstreamUnavailable(), retry=True) from exc
        call = call.traced(response.headers.get("Trace-Id"))
        await _check_http(response, call)
        body = _json(response, call)
        call = call.traced(_body_trace(body))
        return reply(_checked(body, call), call)


async def _check_http(response: httpx.Response, call: _Call) -> None:
    """A non-200 is mapped by the table: by MiniMax's own code when its error envelope
    names one the table knows, else by the status. The envelope (``{"error": {"type",
    "message", "code"?}}`` or ``{"base_resp": ...}``) goes to the log, never further."""
    status = response.status_code
    if status == 200:
        return
    body = await _error_body(response)
    code, text = _envelope(body)
    call = call.traced(_body_trace(_json_or_none(body)))
    known = _BY_CODE.get((False, code)) if code is not None else None
    if known is not None and code is not None:
        _log_failure(known, f"HTTP {status} base_resp {code}", _loggable(text), call)
        raise known.failure(code)
    row = failure_row(status, http=True)
    what = f"HTTP {status}" + (f" code {code}" if code is not None else "")
    _log_failure(row, what, _loggable(text), call)
    raise row.failure(status)


_ERROR_BODY_BYTES = 16 * 1024


async def _error_body(response: httpx.Response) -> bytes:
    """The start of a non-200 body (a stream's too); a broken one says nothing more."""
    data = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= _ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass
    return bytes(data[:_ERROR_BODY_BYTES])


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _envelope(body: bytes) -> tuple[int | None, str]:
    """MiniMax's code (if any) and words from an error body: ``error`` or ``base_resp``,
    else the body's own text (an HTML gateway page), on one line."""
    value = _json_or_none(body)
    if isinstance(value, dict):
        error, base = value.get("error"), value.get("base_resp")
        if isinstance(error, dict):
            words = " ".join(str(error[k]) for k in ("type", "message") if error.get(k))
            return _int(error.get("code")), words
        if isinstance(base, dict):
            return _int(base.get("status_code")), str(base.get("status_msg") or "")
    return None, " ".join(body.decode("utf-8", "replace").split())


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _json(response: httpx.Response, call: _Call) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _invalid(call, "the body is not JSON") from exc


def _body_trace(body: Any) -> Any:
    return body.get("trace_id") if isinstance(body, dict) else None


def _whole_reply(body: Any, call: _Call, params: SpeechParams) -> list[bytes | StreamEnd]:
    """A stream request answered with one JSON body: an error maps as always; a success
    is the whole stream at once, its audio one chunk (the pipeline cuts it to size)."""
    call = call.traced(_body_trace(body))
    event = _parse(_StreamEvent, _checked(body, call), call)
    if not event.final:
        raise _invalid(call, "a JSON reply to a stream request without data.status 2")
    return _ending(event, b"", call, params)


async def _stream_items(
    response: httpx.Response, call: _Call, params: SpeechParams
) -> AsyncIterator[bytes | StreamEnd]:
    """Each event checked like a reply; audio chunks, then the final ``StreamEnd``.

    The chunks are kept to measure what was delivered: the final event's audio_length
    is a claim, charged only as far as the delivered audio bears it out.
    """
    sent = bytearray()
    async with aclosing(_sse_events(response, call)) as events:
        async for raw in events:
            event_call = call.traced(_body_trace(raw))
            event = _parse(_StreamEvent, _checked(raw, event_call), event_call)
            if event.final:
                for item in _ending(event, bytes(sent), event_call, params):
                    yield item
                return
            if event.data is not None and event.data.audio:
                sent += event.data.audio
                yield event.data.audio


async def _sse_events(response: httpx.Response, call: _Call) -> AsyncGenerator[Any, None]:
    """The JSON values of a server-sent event stream, read by httpx-sse as the SSE spec
    says: an event ends at a blank line, its ``data:`` lines join with a newline, ``:``
    comments and ``event:``/``id:``/``retry:`` fields pass, lines end in CRLF, LF or CR.
    An event without data is none (httpx-sse passes id-only ones on); a ``[DONE]``
    terminator, which MiniMax does not document, is tolerated.
    """
    # httpx-sse 0.4.3 dispatches an event only at a blank line: an event that the end
    # of the stream cuts off is dropped (as the SSE spec's letter says). MiniMax's own
    # CLI takes that last event, and its final event may be one, so httpx-sse is fed
    # the body and then one blank line: that flushes a pending last event, and adds
    # nothing after a stream that ended properly. The text is UTF-8 by the SSE spec.
    body = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=_blank_line_after(response)
    )
    async with aclosing(EventSource(body).aiter_sse()) as events:
        async for event in events:
            if not event.data:
                continue
            if event.data.strip() == "[DONE]":
                return
            try:
                value = json.loads(event.data)
            except (ValueError, RecursionError) as exc:
                raise _invalid(call, "an event that is not JSON") from exc
            yield value


async def _blank_line_after(response: httpx.Response) -> AsyncIterator[bytes]:
    async for chunk in response.aiter_bytes():
        yield chunk
    yield b"\n\n"
