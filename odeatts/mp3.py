"""MP3 (MPEG audio Layer III) frames, read from their headers: the one parser we have.

The worker measures and joins the MP3 MiniMax sends; the emulator cuts the MP3 it makes
into stream events at frame boundaries and measures uploaded clone samples. Both ask the
same question of the same bytes (where is each frame, how long is it, how many samples
does it hold) and the answer is fixed by one spec, so there is one parser: two copies had
already drifted apart (ID3v2 footers, VBRI tags, a cut-off last frame). Sharing it does
not let the emulator agree with the worker by construction where it matters: what MiniMax
replies is pinned by the contract fixtures in tests/contract/, and this module is checked
against the spec and against mutagen, frame by frame, in tests/test_mp3.py.

It lives in ``odeatts`` but is pure functions over bytes importing only the standard
library (and ``odeatts/__init__`` imports nothing), so the emulator uses it without
depending on the worker's runtime (httpx, pydantic, databases); tests/test_mp3.py holds
the emulator to that.

The spec (ISO/IEC 11172-3 and 13818-3; MPEG-2.5 is Fraunhofer's extension of the latter):

- a frame header is 11 sync bits, then version (``11`` MPEG-1, ``10`` MPEG-2, ``00``
  MPEG-2.5, ``01`` reserved), layer (``01`` = Layer III), a protection bit, a bitrate
  index (0 = free format and 15 = bad: refused), a sample-rate index (3 reserved) and a
  padding bit;
- a Layer III frame holds 1152 samples in MPEG-1 and 576 in MPEG-2 and 2.5, and is
  ``samples / 8 * bitrate / sample_rate`` bytes, floored, plus one when padded;
- a first frame carrying a Xing/Info (LAME) or VBRI (Fraunhofer) tag holds no audio;
- ID3v2 tags may come first (a 10-byte header, a syncsafe size, 10 more for a v2.4
  footer), an ID3v1 tag (128 bytes from ``TAG``) last.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["Frame", "Mode", "Mp3Error", "duration_ms", "frame_at", "frames", "split"]

_MPEG1, _MPEG2, _MPEG25 = 0b11, 0b10, 0b00
_LAYER3 = 0b01
# Layer III bitrates in kbps by bitrate index (0 free format, 15 bad).
_KBPS = {
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2 and 2.5
}
_RATES = {
    _MPEG1: (44100, 48000, 32000),
    _MPEG2: (22050, 24000, 16000),
    _MPEG25: (11025, 12000, 8000),
}
_MONO = 0b11
_ID3V1_BYTES = 128

Mode = Literal["whole", "prefix", "tolerant"]


class Mp3Error(ValueError):
    """The bytes are not a clean chain of MP3 frames."""


class Frame(NamedTuple):
    """One frame: where it starts, its bytes, its samples, its rate (Hz), its bitrate (bit/s)."""

    offset: int
    length: int
    samples: int
    sample_rate: int
    bitrate: int


def _layout(b1: int, b2: int) -> tuple[int, int, int, int] | None:
    """What header bytes 1 and 2 (padding bit clear) say: (bytes, samples, rate, bitrate),
    or None when they are not a Layer III header the spec allows."""
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version not in _RATES or layer != _LAYER3 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == _MPEG1
    samples, rate = (1152 if mpeg1 else 576), _RATES[version][rate_index]
    bitrate = _KBPS[mpeg1][bitrate_index] * 1000
    return samples // 8 * bitrate // rate, samples, rate, bitrate


# Header bytes 1 and 2 (padding bit clear) -> _layout, filled as headers are met: a file
# repeats one or a few headers, and reading one is then a dict lookup (a job's 55 KB of
# MP3 is about 100 frames, read twice: measured, and joined when in parts).
_LAYOUTS: dict[int, tuple[int, int, int, int] | None] = {}


def frame_at(data: bytes, pos: int) -> Frame | None:
    """The Layer III frame whose header starts at ``pos`` (it may run past the end of
    ``data``), or None when no valid header is there."""
    if pos < 0 or pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2 = data[pos + 1], data[pos + 2]
    key = b1 << 8 | (b2 & 0xFD)
    try:
        layout = _LAYOUTS[key]
    except KeyError:
        layout = _LAYOUTS[key] = _layout(b1, b2 & 0xFD)
    if layout is None:
        return None
    length, samples, rate, bitrate = layout
    return Frame(pos, length + ((b2 >> 1) & 1), samples, rate, bitrate)


def _skip_id3v2(data: bytes) -> int:
    """Offset just past the ID3v2 tags at the start (0 if there are none)."""
    pos = 0
    while data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
        size = 0
        for byte in data[pos + 6 : pos + 10]:
            size = (size << 7) | (byte & 0x7F)
        footer = 10 if data[pos + 3] >= 4 and data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def _is_tag_frame(data: bytes, frame: Frame) -> bool:
    """A Xing/Info or VBRI tag frame: it sits where the audio's side information ends
    (as LAME and mutagen place it), or 32 bytes after the header for VBRI."""
    body = data[frame.offset : frame.offset + frame.length]
    mpeg1, mono = frame.samples == 1152, body[3] >> 6 == _MONO
    at = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    return body[at : at + 4] in (b"Xing", b"Info") or body[36:40] == b"VBRI"


def _resync(data: bytes, pos: int) -> int:
    """The next offset after ``pos`` where two headers in a row start, or len(data)."""
    pos = data.find(b"\xff", pos + 1)
    while pos != -1:
        frame = frame_at(data, pos)
        if frame is not None and frame_at(data, pos + frame.length) is not None:
            return pos
        pos = data.find(b"\xff", pos + 1)
    return len(data)


def frames(data: bytes, mode: Mode = "whole") -> list[Frame]:
    """The audio frames of ``data`` in order (a Xing/Info/VBRI tag frame left out).

    ``whole``: a complete file. Anything but ID3 tags and whole frames, or no frame
    at all, raises Mp3Error (a cut-off last frame too: it would play as a glitch and
    holds samples that cannot be charged).
    ``prefix``: the first bytes of a stream. Frames up to the first thing that is not
    a whole frame; possibly none.
    ``tolerant``: a file from elsewhere (an upload). Junk between frames and a cut-off
    last frame are skipped, as a player would; possibly no frames.
    """
    found: list[Frame] = []
    pos = _skip_id3v2(data)
    while pos < len(data):
        frame = frame_at(data, pos)
        if frame is None or pos + frame.length > len(data):
            if data[pos : pos + 3] == b"TAG" and len(data) - pos == _ID3V1_BYTES:
                break
            if mode == "prefix":
                break
            if mode == "whole":
                raise Mp3Error(f"no whole MP3 frame at byte {pos}")
            pos = _resync(data, pos)
            continue
        if found or not _is_tag_frame(data, frame):
            found.append(frame)
        pos += frame.length
    if mode == "whole" and not found:
        raise Mp3Error("no MP3 frames")
    return found


def duration_ms(data: bytes, mode: Mode = "whole") -> float:
    """How long the frames of ``data`` play, in milliseconds (see ``frames`` for ``mode``)."""
    return sum(f.samples * 1000 / f.sample_rate for f in frames(data, mode))


def split(data: bytes, seconds: float) -> list[bytes]:
    """A whole file cut at frame boundaries into pieces of about ``seconds`` each.

    The first piece keeps whatever precedes the first frame (ID3, a tag frame) and the
    last whatever follows the last, so the pieces join back to exactly ``data``.
    """
    pieces: list[bytes] = []
    start, held = 0, 0.0
    for frame in frames(data):
        if held >= seconds:
            pieces.append(data[start : frame.offset])
            start, held = frame.offset, 0.0
        held += frame.samples / frame.sample_rate
    pieces.append(data[start:])
    return pieces
