"""G.711 μ-law and its WAV container (odeatts/g711.py), and what audio.py makes of them:
pure functions, checked against the standard's values without I/O."""

from __future__ import annotations

import struct

import pytest

from odeatts import g711
from odeatts.audio import AudioError, delivered_ms, duration_ms, join


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


# ITU-T G.711 μ-law codes (Table 2a, as Sun's g711.c computes them on 16-bit input):
# silence is 0xFF (positive zero, inverted), full scale 0x80 / 0x00, and each segment
# doubles its step.
KNOWN = [
    (0, 0xFF),
    (-1, 0x7E),
    (100, 0xF2),
    (-100, 0x72),
    (1000, 0xCE),
    (-1000, 0x4E),
    (8000, 0xA0),
    (-8000, 0x20),
    (32767, 0x80),
    (-32768, 0x00),
]


@pytest.mark.parametrize(("sample", "code"), KNOWN)
def test_mu_law_codes_are_g711_s(sample: int, code: int) -> None:
    assert g711.ulaw_encode(pcm(sample)) == bytes([code])


def test_mu_law_is_one_byte_a_sample_and_louder_is_a_lower_code() -> None:
    codes = g711.ulaw_encode(pcm(0, 64, 512, 4096, 32000))
    assert len(codes) == 5
    assert list(codes) == sorted(codes, reverse=True)


def test_a_mu_law_wav_has_format_7_and_reads_back() -> None:
    data = g711.ulaw_encode(pcm(*range(0, 8000, 8)))
    wav = g711.ulaw_wav(data)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert struct.unpack_from("<I", wav, 4)[0] == len(wav) - 8  # the RIFF size
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", wav, 20)
    assert (tag, channels, rate, byte_rate, align, bits) == (7, 1, 8000, 8000, 1, 8)
    assert g711.read_wav(wav) == (7, 1, 8000, 8, data)


def test_an_odd_data_chunk_is_padded_as_riff_requires() -> None:
    wav = g711.ulaw_wav(b"\xff" * 3)
    assert len(wav) % 2 == 0 and g711.read_wav(wav).data == b"\xff" * 3


@pytest.mark.parametrize("data", [b"", b"RIFF", b"RIFX\0\0\0\0WAVE", b"RIFF\0\0\0\0WAVEdata"])
def test_what_is_not_a_wav_file_is_refused(data: bytes) -> None:
    with pytest.raises(g711.WavError):
        g711.read_wav(data)


def test_raw_mu_law_is_a_byte_a_sample_at_8000_hz() -> None:
    assert duration_ms(bytes(8000), "ulaw", 8000) == 1000
    assert delivered_ms(bytes(4000), "ulaw", 8000) == 500
    assert join([bytes(800), bytes(1600)], "ulaw") == bytes(2400)


def test_a_mu_law_wav_measures_its_samples_and_joins_under_one_header() -> None:
    one, two = g711.ulaw_wav(b"\x7f" * 4000), g711.ulaw_wav(b"\xff" * 8000)
    assert duration_ms(one, "ulaw_wav", 8000) == 500
    joined = join([one, two], "ulaw_wav")
    assert duration_ms(joined, "ulaw_wav", 8000) == 1500
    assert g711.read_wav(joined).data == b"\x7f" * 4000 + b"\xff" * 8000


def test_a_header_claiming_more_samples_than_the_file_holds_counts_what_is_there() -> None:
    wav = g711.ulaw_wav(bytes(8000))
    assert duration_ms(wav[: len(wav) - 4000], "ulaw_wav", 8000) == 500


@pytest.mark.parametrize(
    "audio",
    [
        g711.ulaw_wav(bytes(800), sample_rate=16000),  # not 8000 Hz
        g711.ulaw_wav(b""),  # no samples
        struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            36,
            b"WAVE",
            b"fmt ",
            16,
            1,
            1,
            8000,
            16000,
            2,
            16,
            b"data",
            0,
        ),  # PCM, not μ-law
    ],
)
def test_a_wav_that_is_not_mono_mu_law_at_8000_hz_is_refused(audio: bytes) -> None:
    with pytest.raises(AudioError):
        duration_ms(audio, "ulaw_wav", 8000)
