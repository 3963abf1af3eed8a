"""Validation of a /v1/t2a_v2 request body, field by field.

Why: MiniMax answers a bad parameter with HTTP 200 and base_resp 2013
"invalid params, ..."; the production code must map that to a caller error,
so the emulator checks every documented constraint (and rejects what the
docs do not allow, e.g. emotion "neutral", a non-integer pitch, wav or url
output when streaming). Unknown extra fields are ignored, as MiniMax does.
voice_modify is validated (sliders -100..100, one of four sound_effects) but not
applied; voice_setting.text_normalization is validated but changes nothing;
subtitle_enable (with subtitle_type sentence or word) produces a subtitle file;
timbre_weights (voice mixing) is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minimax_emulator.protocol import ApiError

__all__ = ["EMOTIONS", "MODELS", "T2ARequest", "invalid", "parse_t2a"]

MODELS = frozenset(
    {
        "speech-2.8-hd",
        "speech-2.8-turbo",
        "speech-2.6-hd",
        "speech-2.6-turbo",
        "speech-02-hd",
        "speech-02-turbo",
        "speech-01-hd",
        "speech-01-turbo",
    }
)
EMOTIONS = frozenset(
    {"happy", "sad", "angry", "fearful", "disgusted", "surprised", "calm", "fluent", "whisper"}
)
SAMPLE_RATES = frozenset({8000, 16000, 22050, 24000, 32000, 44100})
BITRATES = frozenset({32000, 64000, 128000, 256000})
AUDIO_FORMATS = frozenset({"mp3", "pcm", "flac", "wav", "pcmu_raw", "pcmu_wav", "opus"})
SOUND_EFFECTS = frozenset({"spacious_echo", "auditorium_echo", "lofi_telephone", "robotic"})
SUBTITLE_TYPES = frozenset({"sentence", "word"})
MAX_TEXT = 10000


@dataclass(frozen=True)
class T2ARequest:
    """A t2a_v2 request that passed validation (defaults filled in)."""

    model: str
    text: str
    voice_id: str
    stream: bool = False
    exclude_aggregated_audio: bool = False
    speed: float = 1.0
    vol: float = 1.0
    pitch: int = 0
    emotion: str | None = None
    sample_rate: int = 32000
    bitrate: int = 128000
    format: str = "mp3"
    channel: int = 1
    output_format: str = "hex"
    tone: tuple[str, ...] = ()
    subtitle_enable: bool = False
    subtitle_type: str = "sentence"


def invalid(detail: str) -> ApiError:
    """The 2013 error MiniMax gives for a bad parameter."""
    return ApiError(2013, f"invalid params, {detail}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    """body[key] as a dict ({} if absent or null)."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{key} must be an object")
    return value


def _flag(obj: dict[str, Any], key: str, name: str) -> bool:
    """obj[key] as a bool (False if absent)."""
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{name} must be a boolean")
    return value


def _choice(obj: dict[str, Any], key: str, name: str, allowed: frozenset[Any], default: Any) -> Any:
    """obj[key] if it is one of allowed (default if absent)."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value not in allowed:
        raise invalid(f"{name} must be one of {sorted(allowed)}")
    return value


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise invalid("text is required and must be a non-empty string")
    if len(text) >= MAX_TEXT:
        raise invalid(f"text length must be less than {MAX_TEXT} characters")
    return text


def _voice(setting: dict[str, Any]) -> dict[str, Any]:
    """voice_id, speed, vol, pitch and emotion from voice_setting."""
    voice_id = setting.get("voice_id")
    if not isinstance(voice_id, str) or not voice_id:
        raise invalid("voice_setting.voice_id is required")
    speed, vol, pitch = setting.get("speed", 1.0), setting.get("vol", 1.0), setting.get("pitch", 0)
    if not _is_number(speed) or not 0.5 <= speed <= 2.0:
        raise invalid("voice_setting.speed must be in [0.5, 2.0]")
    if not _is_number(vol) or not 0 < vol <= 10:
        raise invalid("voice_setting.vol must be in (0, 10]")
    if not _is_int(pitch) or not -12 <= pitch <= 12:
        raise invalid("voice_setting.pitch must be an integer in [-12, 12]")
    emotion = _choice(setting, "emotion", "voice_setting.emotion", EMOTIONS, None)
    _flag(setting, "text_normalization", "voice_setting.text_normalization")
    return {
        "voice_id": voice_id,
        "speed": float(speed),
        "vol": float(vol),
        "pitch": pitch,
        "emotion": emotion,
    }


def _audio(setting: dict[str, Any]) -> dict[str, Any]:
    """sample_rate, bitrate, format and channel from audio_setting."""
    return {
        "sample_rate": _choice(
            setting, "sample_rate", "audio_setting.sample_rate", SAMPLE_RATES, 32000
        ),
        "bitrate": _choice(setting, "bitrate", "audio_setting.bitrate", BITRATES, 128000),
        "format": _choice(setting, "format", "audio_setting.format", AUDIO_FORMATS, "mp3"),
        "channel": _choice(setting, "channel", "audio_setting.channel", frozenset({1, 2}), 1),
    }


def _entry(value: Any) -> bool:
    """One documented tone entry: "word/replacement", neither side empty."""
    if not isinstance(value, str):
        return False
    word, slash, replacement = value.partition("/")
    return bool(slash and word.strip() and replacement.strip())


def _tone(body: dict[str, Any]) -> tuple[str, ...]:
    """pronunciation_dict: an object whose tone is a list of "word/replacement" strings
    (a list of objects, as MiniMax's CLI once sent, is refused: MiniMax-AI/cli #187)."""
    tone = _object(body, "pronunciation_dict").get("tone") or []
    if not isinstance(tone, list) or not all(_entry(t) for t in tone):
        raise invalid('pronunciation_dict.tone must be a list of "word/replacement" strings')
    return tuple(tone)


def _voice_modify(body: dict[str, Any]) -> None:
    modify = _object(body, "voice_modify")
    for key in ("pitch", "intensity", "timbre"):
        value = modify.get(key, 0)
        if not _is_int(value) or not -100 <= value <= 100:
            raise invalid(f"voice_modify.{key} must be an integer in [-100, 100]")
    _choice(modify, "sound_effects", "voice_modify.sound_effects", SOUND_EFFECTS, None)


def _check_stream_combination(stream: bool, audio: dict[str, Any], output_format: str) -> None:
    if stream and audio["format"] == "wav":
        raise invalid("audio_setting.format wav is not supported in stream mode")
    if stream and output_format == "url":
        raise invalid("output_format url is not supported in stream mode")


def parse_t2a(body: Any) -> T2ARequest:
    """Validate a decoded JSON body; raises ApiError(2013, ...) on the first problem."""
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    model = _choice(body, "model", "model", MODELS, None)
    if model is None:
        raise invalid("model is required")
    text = _text(body)
    stream = _flag(body, "stream", "stream")
    exclude = _flag(
        _object(body, "stream_options"),
        "exclude_aggregated_audio",
        "stream_options.exclude_aggregated_audio",
    )
    voice = _voice(_object(body, "voice_setting"))
    audio = _audio(_object(body, "audio_setting"))
    output_format = _choice(
        body, "output_format", "output_format", frozenset({"hex", "url"}), "hex"
    )
    _check_stream_combination(stream, audio, output_format)
    tone = _tone(body)
    _voice_modify(body)
    return T2ARequest(
        model=model,
        text=text,
        stream=stream,
        exclude_aggregated_audio=exclude,
        output_format=output_format,
        tone=tone,
        subtitle_enable=_flag(body, "subtitle_enable", "subtitle_enable"),
        subtitle_type=_choice(body, "subtitle_type", "subtitle_type", SUBTITLE_TYPES, "sentence"),
        **voice,
        **audio,
    )
