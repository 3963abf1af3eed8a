"""The public contract: what a caller may send in ``job.input`` and what comes back.

Accepted input shapes (``input`` of a RunPod job)::

    {"api_key": "odea_...", "text": "...", "voice"?: "british-female",      # action "speech"
     "speed"?: 0.5-2.0, "pitch"?: -12..12, "volume"?: (0, 10], "emotion"?: ...,
     "model"?: ..., "sample_rate"?: ..., "bitrate"?: ..., "format"?: "mp3",
     "language_boost"?: "auto" | "English" | ..., "stream"?: false,
     "output"?: "auto" | "base64" | "url", "timestamps"?: false, "normalize"?: false,
     "effects"?: {"pitch"?, "intensity"?, "timbre"?: -100..100, "sound_effect"?: ...},
     "pronunciations"?: {"Adebayo": "a-de-ba-yo"}}
    {"api_key": "odea_...", "input": "...", "voice": "alloy",                # OpenAI's shape
     "response_format"?: "mp3" | "wav" | "pcm" | "flac", "speed"?: 1.0,
     "model"?: "tts-1" | "tts-1-hd" | "speech-02-hd" | ...}
    {"api_key": "odea_...", "action": "voices", "language"?: "en-NG", "gender"?: "female"}
    {"api_key": "odea_...", "action": "usage", "limit"?: 1-100}

Unknown fields are refused (a typo such as ``"sped"`` must not be silently ignored), and
so is what MiniMax would refuse: a ``language_boost`` not in ``LANGUAGE_BOOSTS``, an
emotion the model lacks (``MODEL_EMOTIONS``; with the default model, the pipeline checks
it with ``check_emotion`` before anything is reserved).
OpenAI's speech request (``openai_shape``) is the same speech job under OpenAI's names,
so code written for OpenAI ports by changing the transport: ``input`` is ``text``,
``response_format`` is ``format`` (``pcm`` at OpenAI's 24000 Hz), ``tts-1`` is the
turbo sibling of our default model and ``tts-1-hd`` its hd sibling. A job is one shape
or the other: OpenAI's fields beside fields of ours only are refused.
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
    "FORMATS",
    "JOB_ID",
    "LANGUAGE_BOOSTS",
    "MAX_PRONUNCIATIONS",
    "MODELS",
    "MODEL_EMOTIONS",
    "SAMPLE_RATES",
    "SOUND_EFFECTS",
    "STREAM_FORMATS",
    "ULAW_FORMATS",
    "Effects",
    "JobRequest",
    "ParsedJob",
    "SpeechRequest",
    "UsageRequest",
    "VoicesRequest",
    "check_emotion",
    "language_boost_problem",
    "merge_pronunciations",
    "openai_shape",
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
# ulaw: G.711 μ-law at 8000 Hz, raw; ulaw_wav: the same in a WAV file (telephony).
Format = Literal["mp3", "wav", "pcm", "flac", "ulaw", "ulaw_wav"]
# voice_modify.sound_effects, one at a time. Source: MiniMax's T2A reference (OpenAPI
# T2aV2Req.voice_modify), as mirrored by third-party copies: see docs/minimax.md.
SoundEffect = Literal["spacious_echo", "auditorium_echo", "lofi_telephone", "robotic"]
MODELS: tuple[str, ...] = get_args(Model)
EMOTIONS: tuple[str, ...] = get_args(Emotion)
SAMPLE_RATES: tuple[int, ...] = get_args(SampleRate)
BITRATES: tuple[int, ...] = get_args(Bitrate)
FORMATS: tuple[str, ...] = get_args(Format)
SOUND_EFFECTS: tuple[str, ...] = get_args(SoundEffect)
ULAW_FORMATS = ("ulaw", "ulaw_wav")
ULAW_RATE = 8000
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
STREAM_FORMATS = ("mp3", "pcm", "ulaw")
# OpenAI's speech request: its fields, the formats of theirs we make, its models.
OPENAI_FIELDS = frozenset({"api_key", "input", "voice", "response_format", "speed", "model"})
OPENAI_FORMATS = ("mp3", "wav", "pcm", "flac")
OPENAI_PCM_RATE = 24000  # OpenAI's pcm is 24 kHz 16-bit mono
_OPENAI_ONLY = ("input", "response_format")


class _Input(BaseModel):
    # strict: a caller's "3" is not 3 and "yes" is not true; JSON's own types only
    # (an integer is still a valid number).
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)

    api_key: SecretStr = Field(min_length=1)


class Effects(BaseModel):
    """MiniMax's voice_modify: each slider -100..100, one optional sound effect."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    pitch: int | None = Field(None, ge=-100, le=100)
    intensity: int | None = Field(None, ge=-100, le=100)
    timbre: int | None = Field(None, ge=-100, le=100)
    sound_effect: SoundEffect | None = None

    @model_validator(mode="after")
    def _something(self) -> Effects:
        if all(v is None for v in (self.pitch, self.intensity, self.timbre, self.sound_effect)):
            raise ValueError("name at least one of pitch, intensity, timbre, sound_effect")
        return self


class SpeechRequest(_Input):
    action: Literal["speech"] = "speech"
    text: str = Field(min_length=1)
    # None: the user's default voice (``users set-voice``), decided at the reservation.
    voice: str | None = Field(None, min_length=1, max_length=64)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    pitch: int = Field(0, ge=-12, le=12)
    volume: float = Field(1.0, gt=0, le=10)
    emotion: Emotion | None = None
    model: Model | None = None
    sample_rate: SampleRate = 32000
    bitrate: Bitrate = 128000
    format: Format = "mp3"
    language_boost: str | None = Field(None, max_length=32)
    stream: bool = False
    output: Literal["auto", "base64", "url"] = "auto"
    timestamps: bool = False
    normalize: bool = False
    effects: Effects | None = None
    pronunciations: dict[str, str] = Field(default_factory=dict)
    # false: synthesise afresh (and refresh the cached entry), never serve from the cache.
    cache: bool = True

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
            raise ValueError(
                f"format {self.format!r} cannot be streamed; use {', '.join(STREAM_FORMATS)}"
            )
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


def openai_shape(raw: dict[str, Any], default_model: str) -> dict[str, Any]:
    """OpenAI's speech request in our names (``raw`` is one when it has ``input`` or
    ``response_format``). Refuses a field of ours beside them, naming it."""
    mixed = sorted(set(raw) - OPENAI_FIELDS)
    if mixed:
        raise InvalidRequest(
            f"`{mixed[0]}` is not a field of OpenAI's speech request, which this job uses "
            "(`input`, `response_format`): send OpenAI's fields or ours (`text`, `format`), "
            "not both.",
            details={"field": mixed[0]},
        )
    ours = {k: v for k, v in raw.items() if k not in _OPENAI_ONLY and k != "model"}
    if "input" in raw:
        if not isinstance(raw["input"], str):
            raise InvalidRequest("`input` must be a string.", details={"field": "input"})
        ours["text"] = raw["input"]
    fmt = raw.get("response_format", "mp3")
    if fmt not in OPENAI_FORMATS:
        raise InvalidRequest(
            f"`response_format` must be one of: {', '.join(OPENAI_FORMATS)}.",
            details={"field": "response_format"},
        )
    ours["format"] = fmt
    if fmt == "pcm":
        ours["sample_rate"] = OPENAI_PCM_RATE
    if "model" in raw:
        ours["model"] = _openai_model(raw["model"], default_model)
    return ours


def _openai_model(model: Any, default_model: str) -> Any:
    """tts-1: the turbo sibling of our default model; tts-1-hd: its hd sibling."""
    tiers = {"tts-1": "turbo", "tts-1-hd": "hd"}
    if not isinstance(model, str) or model not in tiers:
        return model  # one of ours (or not a name), validated as any model is
    return f"{default_model.rsplit('-', 1)[0]}-{tiers[model]}"


def _checked_speech(request: SpeechRequest, max_text_chars: int) -> SpeechRequest:
    """What a speech request's fields cannot say alone."""
    if request.model is not None:
        check_emotion(request.emotion, request.model)  # the default model: pipeline._parts
    if len(request.text) > max_text_chars:
        raise InvalidRequest(
            f"`text` is {len(request.text)} characters; the limit is {max_text_chars}.",
            details={"field": "text", "max_chars": max_text_chars},
        )
    return _telephony(request)


def _telephony(request: SpeechRequest) -> SpeechRequest:
    """μ-law is 8000 Hz: that is its default rate, and the only one."""
    if request.format not in ULAW_FORMATS or request.sample_rate == ULAW_RATE:
        return request
    if "sample_rate" in request.model_fields_set:
        raise InvalidRequest(
            f"`sample_rate`: {request.format} is {ULAW_RATE} Hz; leave sample_rate out.",
            details={"field": "sample_rate"},
        )
    return request.model_copy(update={"sample_rate": ULAW_RATE})


def parse_job(
    job: Any, *, max_text_chars: int, default_model: str = "speech-02-turbo"
) -> ParsedJob:
    """Validate a raw RunPod job. Raises ``InvalidRequest`` naming the first bad field.

    ``default_model`` is the deployment's (``MINIMAX_MODEL``, whose default this is):
    OpenAI's ``tts-1`` and ``tts-1-hd`` are read as its turbo and hd siblings."""
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
    if any(name in raw for name in _OPENAI_ONLY):
        raw = openai_shape(raw, default_model)
    raw = {"action": "speech", **raw}
    try:
        request = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if isinstance(request, SpeechRequest):
        request = _checked_speech(request, max_text_chars)
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
