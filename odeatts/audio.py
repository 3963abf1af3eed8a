"""Audio we relay: MP3 frame arithmetic, joining parts, measuring what was delivered.

Long texts are synthesised in parts and joined. MP3 frames are independent units,
so parts made with the same settings join frame-accurately by concatenating their
audio frames; each part's ID3 tag and Xing/Info header frame are dropped, since they
would describe one part and play as a click or mislead a player about the length.
WAV parts join by their PCM data under one new header; PCM is bytes end to end.

``duration_ms`` measures a whole file from its own bytes, per format, and refuses
bytes that are not that format: what MiniMax claims (``audio_length``) is checked
against it, so a caller is never charged for audio the bytes do not hold.
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "AudioError",
    "Frame",
    "delivered_ms",
    "duration_ms",
    "join",
    "mp3_duration_ms",
    "mp3_frames",
    "split_mp3",
]

_BITRATES = {  # kbps by (MPEG-1?) for Layer III
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


class AudioError(ValueError):
    """Bytes that are not the audio they claim to be."""


class Frame(NamedTuple):
    offset: int
    length: int
    samples: int
    sample_rate: int


def _frame_at(data: bytes, pos: int) -> Frame | None:
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[pos + 1] >> 3) & 3, (data[pos + 1] >> 1) & 3
    bitrate_index, rate_index = data[pos + 2] >> 4, (data[pos + 2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    rate = _RATES[version][rate_index]
    samples = 1152 if mpeg1 else 576
    padding = (data[pos + 2] >> 1) & 1
    length = samples // 8 * _BITRATES[mpeg1][bitrate_index] * 1000 // rate + padding
    return Frame(pos, length, samples, rate)


def _skip_id3(data: bytes) -> int:
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    return 10 + size


def _is_info(data: bytes, frame: Frame) -> bool:
    body = data[frame.offset:frame.offset + frame.length]
    return b"Xing" in body[:64] or b"Info" in body[:64]


def mp3_frames(data: bytes, *, partial: bool = False) -> list[Frame]:
    """The audio frames of an MP3 (ID3 and Xing/Info frames excluded). Raises AudioError.

    ``partial``: the bytes are a prefix of a stream; an incomplete last frame is ignored.
    """
    pos, found = _skip_id3(data), list[Frame]()
    while pos < len(data):
        frame = _frame_at(data, pos)
        if partial and (frame is None or pos + frame.length > len(data)):
            break
        if frame is None:
            if data[pos:pos + 3] == b"TAG" and len(data) - pos == 128:
                break  # an ID3v1 tag at the very end
            raise AudioError(f"not an MP3 frame at byte {pos}")
        if not (not found and _is_info(data, frame)):
            found.append(frame)
        pos += frame.length
    if not found and not partial:
        raise AudioError("no MP3 frames")
    return found


def mp3_duration_ms(data: bytes, *, partial: bool = False) -> int:
    frames = mp3_frames(data, partial=partial)
    return round(sum(f.samples * 1000 / f.sample_rate for f in frames))


def delivered_ms(data: bytes, fmt: str, sample_rate: int) -> int:
    """How much audio a prefix of a stream holds (what a cancelled stream delivered)."""
    if fmt == "mp3":
        return mp3_duration_ms(data, partial=True)
    if fmt == "pcm":
        return len(data) // 2 * 1000 // sample_rate
    raise AudioError(f"cannot measure a partial {fmt} stream")


def _mp3_ms(data: bytes, _: int) -> int:
    return mp3_duration_ms(data)


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
    "mp3": _mp3_ms, "wav": _wav_ms, "pcm": _pcm_ms, "flac": _flac_ms,
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


def split_mp3(data: bytes, max_bytes: int) -> list[bytes]:
    """Cut an MP3 at frame boundaries into pieces of at most ``max_bytes`` (streaming)."""
    pieces: list[bytes] = []
    start = end = None
    for frame in mp3_frames(data):
        if start is None:
            start = frame.offset
        elif frame.offset + frame.length - start > max_bytes:
            pieces.append(data[start:end])
            start = frame.offset
        end = frame.offset + frame.length
    pieces.append(data[start:end])
    return pieces


def _join_mp3(parts: list[bytes]) -> bytes:
    return b"".join(data[f.offset:f.offset + f.length]
                    for data in parts for f in mp3_frames(data))


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
    if fmt == "pcm":
        return b"".join(parts)
    raise AudioError(f"cannot join {fmt} parts")
