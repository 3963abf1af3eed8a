"""Small, exact audio files built by hand, for tests that need known durations."""

from __future__ import annotations

import io
import wave

__all__ = ["MP3_FRAME_MS", "flac", "mp3", "wav"]

# MPEG-1 Layer III, 128 kbps, 44.1 kHz, no padding: 417 bytes, 1152 samples.
_MP3_FRAME = bytes.fromhex("fffb9000") + bytes(413)
MP3_FRAME_MS = 1152 * 1000 / 44100


def mp3(frames: int) -> bytes:
    """``frames`` silent MP3 frames (about 26 ms each)."""
    return _MP3_FRAME * frames


def wav(frames: int, rate: int = 16000, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(bytes(frames * width))
    return out.getvalue()


def flac(samples: int, rate: int = 44100, *, first_block: int = 0, size: int = 34) -> bytes:
    """A FLAC signature and STREAMINFO block (the only part a duration needs)."""
    fields = (rate << 44) | (0 << 41) | (15 << 36) | samples  # mono, 16 bits per sample
    info = bytes(10) + fields.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80 | first_block]) + size.to_bytes(3, "big") + info
