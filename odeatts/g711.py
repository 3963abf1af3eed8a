"""G.711 μ-law telephony audio and its WAV container: the one home of both.

Telephony callers (Twilio, SIP trunks) take 8-bit μ-law at 8000 Hz, raw or in a WAV
file whose ``fmt`` chunk says format 7 (WAVE_FORMAT_MULAW). MiniMax makes both itself
(``pcmu_raw``, ``pcmu_wav``); the worker measures and joins what it sends, and the
emulator encodes μ-law from its PCM. One module serves both sides, as ``odeatts.mp3``
does: pure functions over bytes, importing only the standard library. Python's
``wave`` reads only PCM (format 1), hence the small RIFF reader here.

μ-law (ITU-T G.711, as in Sun's reference ``g711.c``): a 16-bit sample is clipped to
32635, biased by 0x84 (in 14 bits, as g711.c and Python's audioop compute it:
8159 and 33), and coded as sign, a 3-bit segment (the position of its top
bit) and the 4 bits below it, all inverted. One byte per sample, so a raw file of
``n`` bytes at 8000 Hz plays ``n / 8`` ms.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from typing import NamedTuple

__all__ = [
    "MULAW",
    "MULAW_RATE",
    "WavError",
    "WavInfo",
    "read_wav",
    "ulaw_encode",
    "ulaw_wav",
]

MULAW = 7  # WAVE_FORMAT_MULAW, the fmt chunk's format tag
MULAW_RATE = 8000
_BIAS, _CLIP = 0x84 >> 2, 8159  # in 14-bit units


class WavError(ValueError):
    """Bytes that are not a readable RIFF/WAVE file."""


class WavInfo(NamedTuple):
    format_tag: int
    channels: int
    sample_rate: int
    bits: int
    data: bytes  # the data chunk as far as the file holds it


def _ulaw(sample: int) -> int:
    sample >>= 2  # to 14 bits, as g711.c does (a floor: -1 stays -1)
    mask = 0xFF
    if sample < 0:
        sample, mask = -sample, 0x7F
    sample = min(sample, _CLIP) + _BIAS
    segment = max(sample.bit_length() - 6, 0)  # up to 0x3F is segment 0
    if segment > 7:  # the clipped maximum plus the bias: the top code
        return 0x7F ^ mask
    return ((segment << 4) | ((sample >> (segment + 1)) & 0x0F)) ^ mask


@functools.cache
def _table() -> bytes:
    """The code of every 16-bit sample, built at the first encode (70 ms): the worker
    imports this module to measure μ-law, never to encode it."""
    return bytes(_ulaw(s - 65536 if s >= 32768 else s) for s in range(65536))


def ulaw_encode(pcm16: bytes) -> bytes:
    """16-bit little-endian signed PCM -> μ-law, one byte per sample."""
    samples = array("H")
    samples.frombytes(pcm16[: len(pcm16) - len(pcm16) % 2])
    if sys.byteorder == "big":  # pragma: no cover - the samples are little-endian
        samples.byteswap()
    return bytes(map(_table().__getitem__, samples))


def ulaw_wav(data: bytes, sample_rate: int = MULAW_RATE) -> bytes:
    """μ-law bytes in a WAV file: RIFF, an 18-byte fmt chunk (cbSize 0, as format tags
    other than PCM carry), the data chunk (padded to an even size, as RIFF requires)."""
    fmt = struct.pack("<HHIIHHH", MULAW, 1, sample_rate, sample_rate, 1, 8, 0)
    pad = b"\x00" if len(data) % 2 else b""
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"data", data) + pad
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload


def read_wav(data: bytes) -> WavInfo:
    """The fmt and data chunks of a WAV file, of any format tag. Raises WavError."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        start = offset + 8
        if kind == b"fmt ":
            if size < 16 or start + 16 > len(data):
                raise WavError("a fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, start)
            fmt = (tag, channels, rate, bits)
        elif kind == b"data":
            if fmt is None:
                raise WavError("a data chunk before the fmt chunk")
            return WavInfo(*fmt, data=data[start : start + size])
        offset = start + size + size % 2
    raise WavError("no data chunk")
