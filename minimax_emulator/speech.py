"""Real speech for the emulator, from libespeak-ng through ctypes.

Why: the production code must not be able to tell the emulator from MiniMax,
so t2a answers carry real, decodable audio whose length follows the text,
the speed and the `<#x.xx#>` pause markers. espeak-ng is small, offline and
fast (about 1,000x real time); it is driven straight through its C API.

espeak-ng keeps global state (one voice, one set of parameters, one
callback), so it is initialised once and every synthesis holds one
threading.Lock. MiniMax parameters map onto espeak as:
speed -> words per minute (175 x speed), pitch -12..12 -> espeak pitch
0..100 around 50, vol (0, 10] -> espeak volume 0..200 (1.0 -> 100), emotion
-> pitch range and small rate/pitch/volume nudges. `<#x.xx#>` pause markers
become that many seconds of silence between spoken segments (values outside
0.01..99.99 are clamped, not refused). Output length is computed from the
PCM sample count, as MiniMax's extra_info.audio_length (milliseconds).

Formats: mp3 (LAME via lameenc), wav (stdlib `wave`), pcm (raw 16-bit LE), and
G.711 μ-law raw or in WAV (pcmu_raw, pcmu_wav; odeatts.g711, always mono).
flac is NOT produced: no pure-Python route is trivial, so `synthesize`
raises UnsupportedFormatError and the emulator answers flac (and the global-only
opus) with base_resp 1000 "emulator: <format> not supported",
e.g. "emulator: flac not supported". Volume is applied by espeak itself (its
volume parameter) rather than by scaling samples in Python, for speed.
"""

from __future__ import annotations

import ctypes
import re
import threading
from array import array
from dataclasses import dataclass
from functools import lru_cache

import espeakng_loader  # type: ignore[import-untyped]

from minimax_emulator.encode import SOURCE_RATE, encode, output_samples

__all__ = [
    "FORMATS",
    "PAUSE",
    "SAMPLE_BYTES",
    "Synthesis",
    "UnsupportedFormatError",
    "strip_pauses",
    "synthesize",
    "voice_available",
]

FORMATS = frozenset({"mp3", "wav", "pcm", "pcmu_raw", "pcmu_wav"})
# Bytes per sample and channel, where the format is raw samples.
SAMPLE_BYTES = {"pcm": 2, "pcmu_raw": 1}
PAUSE = re.compile(r"<#(\d+(?:\.\d+)?)#>")

_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
# emotion -> (pitch range 0..100, rate factor, pitch offset, volume factor)
_EMOTIONS: dict[str | None, tuple[int, float, int, float]] = {
    None: (50, 1.0, 0, 1.0),
    "fluent": (50, 1.0, 0, 1.0),
    "happy": (75, 1.05, 6, 1.0),
    "sad": (20, 0.9, -6, 0.9),
    "angry": (85, 1.05, 2, 1.3),
    "fearful": (70, 1.1, 4, 0.9),
    "disgusted": (35, 0.95, -3, 1.0),
    "surprised": (95, 1.0, 8, 1.1),
    "calm": (30, 0.92, -2, 0.9),
    "whisper": (15, 0.95, 0, 0.5),
}


class UnsupportedFormatError(ValueError):
    """MiniMax accepts the format but the emulator cannot produce it."""


@dataclass(frozen=True)
class Synthesis:
    """Finished audio plus the facts MiniMax reports in extra_info."""

    audio: bytes
    duration_ms: int
    sample_rate: int
    channels: int
    format: str
    bitrate: int

    @property
    def size(self) -> int:
        """Size of the encoded audio in bytes (extra_info.audio_size)."""
        return len(self.audio)


class _Espeak:
    """The one libespeak-ng instance of this process (use under _LOCK only)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        path = espeakng_loader.get_data_path().encode()
        if self.lib.espeak_Initialize(_SYNCHRONOUS, 0, path, 0) != SOURCE_RATE:
            raise RuntimeError("espeak-ng did not initialise at 22050 Hz")
        self.pcm = array("h")
        self.callback = _CALLBACK(self._collect)  # keep a reference: C holds it
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav: ctypes.c_void_p, count: int, _events: ctypes.c_void_p) -> int:
        """espeak's synth callback: append count samples, 0 = keep going."""
        if count > 0:
            self.pcm.frombytes(ctypes.string_at(wav, count * 2))
        return 0

    def set_voice(self, name: str) -> bool:
        """Select an espeak voice such as "en-us+f3"; False if unknown."""
        return bool(self.lib.espeak_SetVoiceByName(name.encode()) == 0)

    def speak(self, text: str, params: dict[int, int]) -> array[int]:
        """Synthesize text with the current voice and params, return int16 samples."""
        for key, value in params.items():
            self.lib.espeak_SetParameter(key, value, 0)
        self.pcm = array("h")
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return self.pcm


_LOCK = threading.Lock()
_ENGINE: list[_Espeak] = []


def _engine() -> _Espeak:
    """The shared engine, created on first use (caller holds _LOCK)."""
    if not _ENGINE:
        _ENGINE.append(_Espeak())
    return _ENGINE[0]


def voice_available(name: str) -> bool:
    """Whether espeak-ng knows the voice name (with optional +variant)."""
    with _LOCK:
        return _engine().set_voice(name)


def strip_pauses(text: str) -> str:
    """text without its `<#x.xx#>` pause markers."""
    return PAUSE.sub(" ", text)


def _segments(text: str) -> list[str | float]:
    """Split text into spoken pieces (str) and pauses (seconds, 0.01..99.99)."""
    parts = PAUSE.split(text)
    out: list[str | float] = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(min(max(float(part), 0.01), 99.99))
        elif part.strip():
            out.append(part)
    return out


def _params(speed: float, vol: float, pitch: int, emotion: str | None) -> dict[int, int]:
    """MiniMax voice settings as espeak parameter values."""
    pitch_range, rate_factor, pitch_offset, vol_factor = _EMOTIONS.get(emotion, _EMOTIONS[None])
    loudness = vol * vol_factor
    volume = 100 * loudness if loudness <= 1 else 100 + (loudness - 1) * 100 / 9
    return {
        _RATE: round(min(max(175 * speed * rate_factor, 80), 450)),
        _PITCH: round(min(max(50 + pitch * 50 / 12 + pitch_offset, 0), 100)),
        _VOLUME: round(min(max(volume, 1), 200)),
        _RANGE: pitch_range,
    }


def _render(text: str, voice: str, params: dict[int, int]) -> array[int]:
    """All segments of text as one 22,050 Hz mono int16 signal."""
    pcm = array("h")
    with _LOCK:
        engine = _engine()
        if not engine.set_voice(voice):
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for segment in _segments(text):
            if isinstance(segment, float):
                pcm.frombytes(bytes(2 * round(segment * SOURCE_RATE)))
            else:
                pcm.extend(engine.speak(segment, params))
    return pcm


# Tests say the same sentences many times (a 30-minute text is one sentence repeated,
# split into identical parts): speaking and encoding them once keeps the suite fast.
# Results are immutable; 64 entries of a few MB at most.
@lru_cache(maxsize=64)
def synthesize(
    text: str,
    voice: str,
    *,
    speed: float = 1.0,
    vol: float = 1.0,
    pitch: int = 0,
    emotion: str | None = None,
    sample_rate: int = 32000,
    bitrate: int = 128000,
    fmt: str = "mp3",
    channels: int = 1,
) -> Synthesis:
    """Speak text with espeak voice `voice` and encode it as MiniMax would."""
    if fmt not in FORMATS:
        raise UnsupportedFormatError(f"emulator: {fmt} not supported")
    pcm = _render(text, voice, _params(speed, vol, pitch, emotion))
    if not pcm:  # nothing speakable: a short silence, never an empty file
        pcm.frombytes(bytes(2 * SOURCE_RATE // 10))
    audio = encode(pcm, fmt, sample_rate, bitrate, channels)
    samples = output_samples(len(pcm), SOURCE_RATE, sample_rate)
    return Synthesis(
        audio, round(samples * 1000 / sample_rate), sample_rate, channels, fmt, bitrate
    )
