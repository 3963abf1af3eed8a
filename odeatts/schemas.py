"""The public contract: what a caller may send in ``job.input`` and what comes back.

Accepted input shapes (``input`` of a RunPod job)::

    {"api_key": "odea_...", "text": "...", "voice": "british-female",       # action "speech"
     "speed"?: 0.5-2.0, "pitch"?: -12..12, "volume"?: (0, 10], "emotion"?: ...,
     "model"?: ..., "sample_rate"?: ..., "bitrate"?: ..., "format"?: "mp3",
     "language_boost"?: "auto" | "English" | ..., "stream"?: false,
     "output"?: "auto" | "base64" | "url", "pronunciations"?: {"Adebayo": "a-de-ba-yo"}}
    {"api_key": "odea_...", "action": "voices", "language"?: "en-NG", "gender"?: "female"}
    {"api_key": "odea_...", "action": "usage", "limit"?: 1-100}

Unknown fields are refused (a typo such as ``"sped"`` must not be silently ignored), and
so is what MiniMax would refuse: a ``language_boost`` not in ``LANGUAGE_BOOSTS``, an
emotion the model lacks (``MODEL_EMOTIONS``; with the default model, the pipeline checks
it with ``check_emotion`` before anything is reserved).
``parse_job`` is pure: it turns a raw job into one of these models or raises
``InvalidRequest`` naming the field, and is tested without any I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from odeatts.errors import InvalidRequest, Unauthorized

__all__ = [
    "BITRATES",
    "EMOTIONS",
    "JOB_ID",
    "LANGUAGE_BOOSTS",
    "MAX_PRONUNCIATIONS",
    "MODELS",
    "MODEL_EMOTIONS",
    "SAMPLE_RATES",
    "STREAM_FORMATS",
    "JobRequest",
    "ParsedJob",
    "SpeechRequest",
    "UsageRequest",
    "VoicesRequest",
    "check_emotion",
    "language_boost_problem",
    "merge_pronunciations",
    "parse_job",
    "pronunciation_problem",
]

# RunPod job ids: "<uuid>-<region>", "sync-<uuid>-<region>", "test-<uuid>", "local_test".
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

# Each set of values is written once, as the type the input models use; the tuples are
# read from it for messages, the CLI and the tests.
Model = Literal[
    "speech-2.8-hd",
    "speech-2.8-turbo",
    "speech-2.6-hd",
    "speech-2.6-turbo",
    "speech-02-hd",
    "speech-02-turbo",
    "speech-01-hd",
    "speech-01-turbo",
]
Emotion = Literal[
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
    "calm",
    "fluent",
    "whisper",
]
SampleRate = Literal[8000, 16000, 22050, 24000, 32000, 44100]
Bitrate = Literal[32000, 64000, 128000, 256000]
MODELS: tuple[str, ...] = get_args(Model)
EMOTIONS: tuple[str, ...] = get_args(Emotion)
SAMPLE_RATES: tuple[int, ...] = get_args(SampleRate)
BITRATES: tuple[int, ...] = get_args(Bitrate)
# Emotions not every model has. MiniMax's reference says only that fluent and whisper are
# model-dependent; the clients that check it disagree on the rest (LiveKit's MiniMax
# plugin: fluent only on speech-2.6-*; a Rust client: fluent and whisper only on
# speech-2.6-hd/turbo; a Go client: whisper on all but speech-2.8-*). We allow them where
# every source agrees MiniMax takes them: speech-2.6-hd and speech-2.6-turbo.
MODEL_EMOTIONS: dict[str, tuple[str, ...]] = {
    "fluent": ("speech-2.6-hd", "speech-2.6-turbo"),
    "whisper": ("speech-2.6-hd", "speech-2.6-turbo"),
}
# t2a_v2's language_boost: "auto" and these 40 names, spelled exactly so (case matters).
# Source: MiniMax's T2A reference (platform.minimax.io/docs/api-reference/speech-t2a-http),
# as mirrored by the same list in LiveKit's TTSLanguageBoost and Telnyx's MiniMax enum.
LANGUAGE_BOOSTS = (
    "auto",
    "Chinese",
    "Chinese,Yue",
    "English",
    "Arabic",
    "Russian",
    "Spanish",
    "French",
    "Portuguese",
    "German",
    "Turkish",
    "Dutch",
    "Ukrainian",
    "Vietnamese",
    "Indonesian",
    "Japanese",
    "Italian",
    "Korean",
    "Thai",
    "Polish",
    "Romanian",
    "Greek",
    "Czech",
    "Finnish",
    "Hindi",
    "Bulgarian",
    "Danish",
    "Hebrew",
    "Malay",
    "Persian",
    "Slovak",
    "Swedish",
    "Croatian",
    "Filipino",
    "Hungarian",
    "Norwegian",
    "Slovenian",
    "Catalan",
    "Nynorsk",
    "Tamil",
    "Afrikaans",
)
# Pronunciations (MiniMax's pronunciation_dict: {"tone": ["word/replacement", ...]}, see
# docs/minimax.md). MiniMax documents no limits; these are ours, per dictionary (a job's,
# a user's, a voice's), so that a merged dictionary stays small beside a 10,000-character
# text. "/" separates word from replacement, so neither may hold one; a replacement is
# plain text ("a-de-ba-yo", "oh my god") or Chinese tones, "(chu3)(li3)", and
# parentheses anywhere else would read as a broken tone.
MAX_PRONUNCIATIONS = 100
MAX_WORD_CHARS, MAX_PRONUNCIATION_CHARS = 64, 128
_PLAIN = re.compile(r"[^/()\x00-\x1f\x7f]+")
_TONES = re.compile(r"(?:\([^/()\x00-\x1f\x7f]+\))+")

# What a stream can carry and still be charged fairly if the caller stops it midway:
# MiniMax streams no wav, and a partial FLAC cannot be measured.
STREAM_FORMATS = ("mp3", "pcm")


class _Input(BaseModel):
    # strict: a caller's "3" is not 3 and "yes" is not true; JSON's own types only
    # (an integer is still a valid number).
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)

    api_key: SecretStr = Field(min_length=1)


class SpeechRequest(_Input):
    action: Literal["speech"] = "speech"
    text: str = Field(min_length=1)
    voice: str = Field(min_length=1, max_length=64)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    pitch: int = Field(0, ge=-12, le=12)
    volume: float = Field(1.0, gt=0, le=10)
    emotion: Emotion | None = None
    model: Model | None = None
    sample_rate: SampleRate = 32000
    bitrate: Bitrate = 128000
    format: Literal["mp3", "wav", "pcm", "flac"] = "mp3"
    language_boost: str | None = Field(None, max_length=32)
    stream: bool = False
    output: Literal["auto", "base64", "url"] = "auto"
    pronunciations: dict[str, str] = Field(default_factory=dict)

    @field_validator("pronunciations")
    @classmethod
    def _a_dictionary_minimax_reads(cls, value: dict[str, str]) -> dict[str, str]:
        problem = pronunciation_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("language_boost")
    @classmethod
    def _a_language_minimax_boosts(cls, value: str | None) -> str | None:
        problem = language_boost_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _stream_combinations(self) -> SpeechRequest:
        if self.stream and self.format not in STREAM_FORMATS:
            raise ValueError(f"format {self.format!r} cannot be streamed; use mp3 or pcm")
        if self.stream and self.output == "url":
            raise ValueError("a streamed job yields its audio; output 'url' is for stream false")
        return self


class VoicesRequest(_Input):
    action: Literal["voices"]
    language: str | None = Field(None, max_length=16)
    gender: Literal["male", "female", "neutral"] | None = None


class UsageRequest(_Input):
    action: Literal["usage"]
    limit: int = Field(10, ge=1, le=100)


JobRequest = Annotated[SpeechRequest | VoicesRequest | UsageRequest, Field(discriminator="action")]
_ADAPTER: TypeAdapter[SpeechRequest | VoicesRequest | UsageRequest] = TypeAdapter(JobRequest)


class ParsedJob(BaseModel):
    """A job id and its validated request."""

    model_config = ConfigDict(frozen=True)

    id: str
    request: SpeechRequest | VoicesRequest | UsageRequest


def language_boost_problem(value: str | None) -> str | None:
    """Why MiniMax would refuse this language_boost, or None if it would not."""
    if value is None or value in LANGUAGE_BOOSTS:
        return None
    near = [b for b in LANGUAGE_BOOSTS if b.lower() == value.strip().lower()]
    hint = f"did you mean {near[0]!r}? " if near else ""
    return (
        f"{hint}must be 'auto' or one of MiniMax's languages, spelled as it spells them "
        "(e.g. English, French, Chinese,Yue)"
    )


def pronunciation_problem(entries: dict[str, str]) -> str | None:
    """Why MiniMax could not read this dictionary as we send it, or None."""
    if len(entries) > MAX_PRONUNCIATIONS:
        return f"at most {MAX_PRONUNCIATIONS} entries"
    for word, said in entries.items():
        if len(word) > MAX_WORD_CHARS or not _PLAIN.fullmatch(word) or word != word.strip():
            return (
                f"{word[:MAX_WORD_CHARS]!r}: a word is 1 to {MAX_WORD_CHARS} characters, "
                "without '/', parentheses, line breaks or surrounding spaces"
            )
        plain, tones = _PLAIN.fullmatch(said), _TONES.fullmatch(said)
        if len(said) > MAX_PRONUNCIATION_CHARS or said != said.strip() or not (plain or tones):
            return (
                f"{word!r}: a pronunciation is 1 to {MAX_PRONUNCIATION_CHARS} characters of "
                "plain text without '/' or line breaks, or tones such as '(chu3)(li3)'"
            )
    return None


def merge_pronunciations(
    job: dict[str, str], user: dict[str, str] | None, voice: dict[str, str] | None
) -> tuple[tuple[str, str], ...]:
    """One dictionary for MiniMax: the job's entries win over the user's saved ones, and
    those over the voice's."""
    return tuple({**(voice or {}), **(user or {}), **job}.items())


def check_emotion(emotion: str | None, model: str) -> None:
    """Refuse an emotion the model lacks (MiniMax would answer 2013), naming the field."""
    models = MODEL_EMOTIONS.get(emotion or "")
    if models is not None and model not in models:
        raise InvalidRequest(
            f"`emotion` {emotion!r} is only available with model {' or '.join(models)}, "
            f"not {model}; choose another emotion or send `model`.",
            details={"field": "emotion"},
        )


def parse_job(job: Any, *, max_text_chars: int) -> ParsedJob:
    """Validate a raw RunPod job. Raises ``InvalidRequest`` naming the first bad field."""
    if not isinstance(job, dict) or not isinstance(job.get("id"), str) or not job["id"]:
        raise InvalidRequest("The job has no id.", details={"field": "id"})
    if not JOB_ID.fullmatch(job["id"]):
        # RunPod's ids are short printable strings; anything else never reaches the
        # database (a NUL or a lone surrogate would fail there, as a false outage).
        raise InvalidRequest("The job id is not a valid RunPod job id.", details={"field": "id"})
    raw = job.get("input")
    if not isinstance(raw, dict):
        raise InvalidRequest("`input` must be a JSON object.", details={"field": "input"})
    if "api_key" not in raw or not isinstance(raw.get("api_key"), str) or not raw["api_key"]:
        # A missing key is an authentication failure, reported before any other field.
        raise Unauthorized("Missing API key: send it as input.api_key.")
    raw = {"action": "speech", **raw}
    try:
        request = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if isinstance(request, SpeechRequest) and request.model is not None:
        check_emotion(request.emotion, request.model)  # the default model: pipeline._parts
    if isinstance(request, SpeechRequest) and len(request.text) > max_text_chars:
        raise InvalidRequest(
            f"`text` is {len(request.text)} characters; the limit is {max_text_chars}.",
            details={"field": "text", "max_chars": max_text_chars},
        )
    return ParsedJob(id=job["id"], request=request)


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors(include_url=False, include_input=False)[0]
    # The discriminator ("speech") appears in the location of union members; drop it.
    loc = [str(p) for p in first["loc"] if p not in ("speech", "voices", "usage")]
    field = ".".join(loc) or ("stream" if first["type"] == "value_error" else "input")
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        field = "action"
        return InvalidRequest(
            "`action` must be one of: speech, voices, usage.", details={"field": field}
        )
    if first["type"] == "extra_forbidden":
        message = f"Unknown field `{field}`."
    else:
        message = f"`{field}`: {first['msg'].removeprefix('Value error, ')}."
    return InvalidRequest(message, details={"field": field})
