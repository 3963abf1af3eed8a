"""Turn 16-bit mono PCM into the container MiniMax was asked for.

Why: espeak-ng always speaks 16-bit mono at 22,050 Hz, while a t2a request
names a sample rate, channel count, bitrate and format. numpy is not
available, so resampling is pure Python, done polyphase-style (one C-level
`map` per output phase) to stay fast. MP3 lets LAME resample internally,
which is several times faster still: MP3 is the hot path.
"""

from __future__ import annotations

import io
import math
import operator
import sys
import wave
from array import array

import lameenc

from odeatts import g711

__all__ = ["SOURCE_RATE", "encode", "output_samples", "resample", "to_stereo"]

SOURCE_RATE = 22050


def output_samples(n_samples: int, src: int, dst: int) -> int:
    """How many samples n_samples at src Hz become at dst Hz."""
    return n_samples * dst // src


def _phase(padded: array[int], start: int, step: int, count: int, frac: float) -> array[int]:
    """One output phase: every step-th input from start, blended with its neighbour."""
    left = padded[start : start + count * step : step]
    if frac == 0.0:
        return left
    right = padded[start + 1 : start + 1 + count * step : step]
    mixed = map(operator.add, map((1.0 - frac).__mul__, left), map(frac.__mul__, right))
    return array("h", map(int, mixed))


def resample(pcm: array[int], src: int, dst: int) -> array[int]:
    """Linear-interpolation resampling of int16 samples from src Hz to dst Hz."""
    if src == dst or not pcm:
        return array("h", pcm)
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    n_out = output_samples(len(pcm), src, dst)
    periods = -(-n_out // up)
    padded = array("h", pcm)
    padded.extend([pcm[-1]] * (periods * down + down + 2 - len(pcm)))
    out = array("h", bytes(2 * periods * up))
    for j in range(up):
        start, rest = divmod(j * down, up)
        out[j::up] = _phase(padded, start, down, periods, rest / up)
    del out[n_out:]
    return out


def to_stereo(pcm: array[int]) -> array[int]:
    """Interleave a mono signal with itself (L = R)."""
    out = array("h", bytes(4 * len(pcm)))
    out[0::2] = pcm
    out[1::2] = pcm
    return out


def _little_endian(pcm: array[int]) -> bytes:
    """Raw bytes of pcm as 16-bit little-endian, whatever this machine is."""
    if sys.byteorder == "little":
        return pcm.tobytes()
    swapped = array("h", pcm)
    swapped.byteswap()
    return swapped.tobytes()


_LAME_CHUNK = 8192  # samples per channel handed to the encoder at a time


def _mp3(pcm: array[int], sample_rate: int, bitrate: int, channels: int) -> bytes:
    """LAME-encode 22,050 Hz mono pcm at the requested rate, bitrate and channels."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate // 1000)
    encoder.set_in_sample_rate(SOURCE_RATE)
    encoder.set_out_sample_rate(sample_rate)
    encoder.set_channels(channels)
    encoder.set_quality(7)
    samples = _little_endian(to_stereo(pcm) if channels == 2 else pcm)
    # lameenc sizes its output buffer from each call's input (1.25 x samples + 7200
    # bytes): upsampled to 44.1 kHz at 256 kbps, a few seconds of loud speech need more,
    # and LAME fails. Chunks of 8192 samples stay well inside it.
    step = _LAME_CHUNK * 2 * channels
    out = bytearray()
    for start in range(0, len(samples), step):
        out += encoder.encode(samples[start : start + step])
    return bytes(out + encoder.flush())


def _wav(raw: bytes, sample_rate: int, channels: int) -> bytes:
    """Wrap little-endian 16-bit PCM in a RIFF/WAVE header."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(raw)
    return buffer.getvalue()


def encode(pcm: array[int], fmt: str, sample_rate: int, bitrate: int, channels: int) -> bytes:
    """Encode 22,050 Hz mono int16 pcm as mp3, wav, pcm (raw 16-bit LE) or G.711
    μ-law (pcmu_raw, pcmu_wav: mono, one byte a sample, at the asked rate)."""
    if fmt == "mp3":
        return _mp3(pcm, sample_rate, bitrate, channels)
    samples = resample(pcm, SOURCE_RATE, sample_rate)
    raw = _little_endian(to_stereo(samples) if channels == 2 else samples)
    if fmt == "wav":
        return _wav(raw, sample_rate, channels)
    if fmt == "pcm":
        return raw
    if fmt == "pcmu_raw":
        return g711.ulaw_encode(_little_endian(samples))
    if fmt == "pcmu_wav":
        return g711.ulaw_wav(g711.ulaw_encode(_little_endian(samples)), sample_rate)
    raise ValueError(f"unsupported format {fmt!r}")
