"""MPEG audio Layer III frame parser.

Why: the emulator must cut its MP3 output into SSE chunks at frame boundaries
(as MiniMax does, so every chunk is independently decodable) and must measure
uploaded MP3s for the 10 s - 5 min clone rule. The project's own tests also use
it to check that an MP3 returned by the worker really is a chain of valid frames
and has the length MiniMax claimed. Pure Python, no decoder needed: a frame's
header alone gives its length and how many samples it carries.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Frame", "Mp3Error", "duration_ms", "frames", "split"]

_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


class Mp3Error(ValueError):
    """The bytes are not a clean chain of MPEG Layer III frames."""


class Frame(NamedTuple):
    """One audio frame: where it is, how long it is, what it holds."""

    offset: int
    length: int
    samples: int
    sample_rate: int


def _header(data: bytes, pos: int) -> Frame | None:
    """Decode the 4-byte header at pos; None if it is not a Layer III header."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2 = data[pos + 1], data[pos + 2]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rate = _SAMPLE_RATES[version][rate_index]
    mpeg1 = version == 3
    kbps = (_BITRATES_V1 if mpeg1 else _BITRATES_V2)[bitrate_index]
    length = (144 if mpeg1 else 72) * kbps * 1000 // rate + ((b2 >> 1) & 1)
    return Frame(pos, length, 1152 if mpeg1 else 576, rate)


def _is_info_frame(data: bytes, frame: Frame) -> bool:
    """True for a Xing/Info/VBRI tag frame, which carries no audio."""
    body = data[frame.offset : frame.offset + frame.length]
    return any(tag in body[:64] for tag in (b"Xing", b"Info", b"VBRI"))


def _skip_id3v2(data: bytes) -> int:
    """Offset just past a leading ID3v2 tag (0 if there is none)."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _resync(data: bytes, pos: int) -> int:
    """Next offset after pos where two consecutive valid headers start, or len(data)."""
    pos = data.find(b"\xff", pos + 1)
    while pos != -1:
        frame = _header(data, pos)
        if frame and _header(data, pos + frame.length):
            return pos
        pos = data.find(b"\xff", pos + 1)
    return len(data)


def frames(data: bytes, strict: bool = True) -> list[Frame]:
    """Every audio frame in data, in order (Xing/Info tag frames left out).

    strict=True raises Mp3Error on anything but ID3 tags and whole frames
    (the check a test wants); strict=False skips junk and a cut-off last frame
    (what a tolerant reader of uploaded files wants).
    """
    found: list[Frame] = []
    pos = _skip_id3v2(data)
    while pos < len(data):
        frame = _header(data, pos)
        if frame is None or frame.offset + frame.length > len(data):
            if data[pos : pos + 3] == b"TAG" and len(data) - pos == 128:
                break
            if strict:
                raise Mp3Error(f"no complete MP3 frame at offset {pos}")
            pos = _resync(data, pos)
            continue
        if found or not _is_info_frame(data, frame):
            found.append(frame)
        pos += frame.length
    if strict and not found:
        raise Mp3Error("no MP3 frames found")
    return found


def duration_ms(data: bytes, strict: bool = True) -> float:
    """Playing time of data in milliseconds, from its frames' sample counts."""
    return sum(f.samples * 1000.0 / f.sample_rate for f in frames(data, strict))


def split(data: bytes, seconds: float) -> list[bytes]:
    """Cut data at frame boundaries into pieces of about `seconds` of audio each.

    The first piece keeps anything before the first frame (ID3, Info frame), so
    the pieces concatenate back to exactly data.
    """
    found = frames(data)
    pieces: list[bytes] = []
    start, held = 0, 0.0
    for frame in found:
        if held >= seconds:
            pieces.append(data[start : frame.offset])
            start, held = frame.offset, 0.0
        held += frame.samples / frame.sample_rate
    pieces.append(data[start:])
    return pieces
