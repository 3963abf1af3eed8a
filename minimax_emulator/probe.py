"""Length of an uploaded clone sample (wav, mp3 or m4a), without decoding it.

Why: MiniMax refuses clone audio shorter than 10 s or longer than 5 minutes
(2037), so the emulator must know how long an upload plays. WAV: from its
header; MP3: by counting frames; M4A: from the `mvhd` box.
"""

from __future__ import annotations

import io
import struct
import wave

from odeatts import mp3

__all__ = ["EXTENSIONS", "duration_seconds"]

EXTENSIONS = frozenset({"mp3", "m4a", "wav"})


def _wav(data: bytes) -> float:
    with wave.open(io.BytesIO(data), "rb") as reader:
        return float(reader.getnframes() / reader.getframerate())


def _m4a(data: bytes) -> float:
    pos = data.find(b"mvhd")
    if pos < 0:
        raise ValueError("no mvhd box")
    if data[pos + 4] == 1:
        scale, length = struct.unpack_from(">IQ", data, pos + 24)
    else:
        scale, length = struct.unpack_from(">II", data, pos + 16)
    return float(length / scale)


def _mp3(data: bytes) -> float:
    return mp3.duration_ms(data, "tolerant") / 1000.0


def duration_seconds(data: bytes, extension: str) -> float:
    """Playing time in seconds; ValueError if the bytes are not that format."""
    reader = {"wav": _wav, "m4a": _m4a, "mp3": _mp3}[extension]
    try:
        seconds = reader(data)
    except (wave.Error, struct.error, EOFError, ZeroDivisionError, IndexError) as exc:
        raise ValueError(f"cannot read {extension} audio: {exc}") from exc
    if seconds <= 0:
        raise ValueError(f"no {extension} audio found")
    return seconds
