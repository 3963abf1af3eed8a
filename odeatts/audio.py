"""Audio we relay: joining parts, measuring files and what a stream delivered.

Long texts are synthesised in parts and joined. MP3 frames are independent units,
so parts made with the same settings join frame-accurately by concatenating their
audio frames; each part's ID3 tag and Xing/Info header frame are dropped, since they
would describe one part and play as a click or mislead a player about the length.
WAV parts join by their PCM data under one new header; PCM is bytes end to end, and
so is raw μ-law (``ulaw``, one byte a sample at 8000 Hz); μ-law WAV (``ulaw_wav``)
joins as WAV does. MP3 frames are read by ``odeatts.mp3``, μ-law WAV by
``odeatts.g711``: the parsers the emulator shares.

``duration_ms`` measures a whole file from its own bytes, per format, and refuses
bytes that are not that format: what MiniMax claims (``audio_length``) is checked
against it, so a caller is never charged for audio the bytes do not hold.
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable

from odeatts import g711, mp3

__all__ = ["AudioError", "delivered_ms", "duration_ms", "join"]


class AudioError(ValueError):
    """Bytes that are not the audio they claim to be."""


def _mp3_frames(data: bytes) -> list[mp3.Frame]:
    try:
        return mp3.frames(data)
    except mp3.Mp3Error as exc:
        raise AudioError(str(exc)) from exc


def delivered_ms(data: bytes, fmt: str, sample_rate: int) -> int:
    """How much audio a prefix of a stream holds (what a cancelled stream delivered)."""
    if fmt == "mp3":
        return round(mp3.duration_ms(data, "prefix"))
    if fmt == "pcm":
        return len(data) // 2 * 1000 // sample_rate
    if fmt == "ulaw":
        return len(data) * 1000 // g711.MULAW_RATE
    raise AudioError(f"cannot measure a partial {fmt} stream")


def _mp3_ms(data: bytes, _: int) -> int:
    return round(sum(f.samples * 1000 / f.sample_rate for f in _mp3_frames(data)))


def _wav_ms(data: bytes, _: int) -> int:
    """Frames actually present over the header's rate (a header can claim more data)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:  # refuses anything but PCM
            width: int = reader.getsampwidth() * reader.getnchannels()
            rate: int = reader.getframerate()
            frames = len(reader.readframes(reader.getnframes())) // max(width, 1)
    # wave's chunk reader raises RuntimeError on a chunk size past the end.
    except (wave.Error, EOFError, RuntimeError, struct.error, ValueError) as exc:
        raise AudioError(f"not a PCM WAV file ({exc})") from exc
    if width <= 0 or rate <= 0 or frames <= 0:
        raise AudioError("a WAV file without PCM frames")
    return frames * 1000 // rate


def _pcm_ms(data: bytes, sample_rate: int) -> int:
    """16-bit mono at the rate we asked for: raw PCM carries no header to say otherwise."""
    if len(data) % 2 or sample_rate <= 0:
        raise AudioError("16-bit PCM must be an even number of bytes")
    return len(data) // 2 * 1000 // sample_rate


def _ulaw_ms(data: bytes, _: int) -> int:
    """One byte a sample, always at 8000 Hz: raw μ-law has no header to say otherwise."""
    return len(data) * 1000 // g711.MULAW_RATE


def _mulaw_wav(data: bytes) -> bytes:
    """The μ-law samples of a μ-law WAV file (mono, 8 bits, 8000 Hz), or AudioError."""
    try:
        info = g711.read_wav(data)
    except g711.WavError as exc:
        raise AudioError(f"not a WAV file ({exc})") from exc
    wanted = (g711.MULAW, 1, g711.MULAW_RATE, 8)
    if info[:4] != wanted:
        raise AudioError(f"not mono 8-bit μ-law at 8000 Hz (fmt {info[:4]})")
    if not info.data:
        raise AudioError("a μ-law WAV file without samples")
    return info.data


def _ulaw_wav_ms(data: bytes, _: int) -> int:
    """Samples actually present (a header can claim more data) over 8000 Hz."""
    return len(_mulaw_wav(data)) * 1000 // g711.MULAW_RATE


_STREAMINFO = 0
_STREAMINFO_BYTES = 34
_SAMPLES_MASK = (1 << 36) - 1


def _flac_ms(data: bytes, _: int) -> int:
    """STREAMINFO's total samples over its sample rate (FLAC's first metadata block)."""
    if data[:4] != b"fLaC" or len(data) < 8 + _STREAMINFO_BYTES:
        raise AudioError("not a FLAC file")
    if data[4] & 0x7F != _STREAMINFO or int.from_bytes(data[5:8], "big") != _STREAMINFO_BYTES:
        raise AudioError("a FLAC file without its STREAMINFO block")
    # After 10 bytes of block and frame sizes: 20 bits rate, 3 channels, 5 bits/sample,
    # 36 bits total samples (0 = unknown, which we cannot charge against).
    fields = int.from_bytes(data[18:26], "big")
    rate, samples = fields >> 44, fields & _SAMPLES_MASK
    if rate == 0 or samples == 0:
        raise AudioError("a FLAC file without its sample rate or sample count")
    return samples * 1000 // rate


_MEASURES: dict[str, Callable[[bytes, int], int]] = {
    "mp3": _mp3_ms,
    "wav": _wav_ms,
    "pcm": _pcm_ms,
    "flac": _flac_ms,
    "ulaw": _ulaw_ms,
    "ulaw_wav": _ulaw_wav_ms,
}


def duration_ms(data: bytes, fmt: str, sample_rate: int) -> int:
    """How long a whole file of ``fmt`` plays, from its bytes alone. Raises AudioError.

    Bytes that are not ``fmt`` (or hold no audio) are refused: they would play as
    nothing, or as noise, and cannot be charged. ``sample_rate`` is the rate we asked
    for; only raw PCM needs it.
    """
    measure = _MEASURES.get(fmt)
    if measure is None:
        raise AudioError(f"cannot measure {fmt} audio")
    if not data:
        raise AudioError("no audio")
    return measure(data, sample_rate)


def _join_mp3(parts: list[bytes]) -> bytes:
    return b"".join(
        data[f.offset : f.offset + f.length] for data in parts for f in _mp3_frames(data)
    )


def _join_wav(parts: list[bytes]) -> bytes:
    params, frames = None, []
    for part in parts:
        with wave.open(io.BytesIO(part)) as reader:
            params = params or reader.getparams()
            frames.append(reader.readframes(reader.getnframes()))
    out = io.BytesIO()
    assert params is not None
    with wave.open(out, "wb") as writer:
        writer.setparams(params)
        writer.writeframes(b"".join(frames))
    return out.getvalue()


def join(parts: list[bytes], fmt: str) -> bytes:
    """One file from parts synthesised with identical settings."""
    if len(parts) == 1:
        return parts[0]
    if fmt == "mp3":
        return _join_mp3(parts)
    if fmt == "wav":
        return _join_wav(parts)
    if fmt in ("pcm", "ulaw"):
        return b"".join(parts)
    if fmt == "ulaw_wav":
        return g711.ulaw_wav(b"".join(_mulaw_wav(part) for part in parts))
    raise AudioError(f"cannot join {fmt} parts")
