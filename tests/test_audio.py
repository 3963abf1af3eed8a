"""duration_ms measures a whole file from its own bytes, per format, and refuses bytes
that are not the format: what MiniMax claims is charged only as far as this bears out."""

from __future__ import annotations

import contextlib
import struct

import lameenc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odeatts.audio import AudioError, delivered_ms, duration_ms
from tests.support.sounds import MP3_FRAME_MS, flac, mp3, wav


def test_mp3_is_its_frames() -> None:
    assert duration_ms(mp3(100), "mp3", 32000) == round(100 * MP3_FRAME_MS)


def test_a_stream_delivered_its_whole_frames() -> None:
    assert delivered_ms(mp3(3)[:-1], "mp3", 32000) == round(2 * MP3_FRAME_MS)
    assert delivered_ms(mp3(3) + b"\xff", "mp3", 32000) == round(3 * MP3_FRAME_MS)
    assert delivered_ms(b"", "mp3", 32000) == 0


def test_a_real_encoder_s_mp3_measures_its_length_plus_padding() -> None:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(32)
    encoder.set_in_sample_rate(16000)
    encoder.set_channels(1)
    audio = bytes(encoder.encode(bytes(16000 * 2)) + encoder.flush())  # one second
    assert 1000 <= duration_ms(audio, "mp3", 16000) <= 1250


def test_wav_is_its_frames_over_its_rate() -> None:
    assert duration_ms(wav(8000, rate=16000), "wav", 32000) == 500


def test_a_wav_header_claiming_more_data_than_it_has_counts_what_is_there() -> None:
    audio = wav(8000, rate=16000)
    assert duration_ms(audio[: 44 + 3200], "wav", 16000) == 100


def test_pcm_is_sixteen_bit_mono_at_the_asked_rate() -> None:
    assert duration_ms(bytes(32000), "pcm", 16000) == 1000
    assert duration_ms(bytes(32000), "pcm", 32000) == 500


def test_flac_is_streaminfo_samples_over_its_rate() -> None:
    assert duration_ms(flac(88200), "flac", 32000) == 2000


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"", "mp3"),
        (b"<html>502 Bad Gateway</html>", "mp3"),
        (mp3(3) + b"garbage", "mp3"),
        (mp3(3)[:-1], "mp3"),  # its last frame cut off
        (b"ID3\x03\x00\x00\x00\x00\x00\x7f", "mp3"),  # a tag and no frames
        (mp3(3), "wav"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (wav(0), "wav"),
        # IEEE float, not PCM: RIFF header with format tag 3.
        (
            b"RIFF"
            + struct.pack("<I", 36)
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 3, 1, 8000, 32000, 4, 32)
            + b"data"
            + struct.pack("<I", 0),
            "wav",
        ),
        (bytes(3), "pcm"),
        (b"", "pcm"),
        (mp3(3), "flac"),
        (flac(88200, first_block=4), "flac"),  # a VORBIS_COMMENT first
        (flac(88200, size=10), "flac"),
        (flac(0), "flac"),  # sample count unknown: nothing to charge against
        (flac(88200, rate=0), "flac"),
        (mp3(3), "opus"),
    ],
)
def test_bytes_that_are_not_the_format_are_refused(data: bytes, fmt: str) -> None:
    with pytest.raises(AudioError):
        duration_ms(data, fmt, 32000)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.sampled_from([mp3(2), wav(100), flac(100)]).flatmap(
            lambda good: st.binary(max_size=len(good)).map(
                lambda noise: (
                    bytes(a ^ b for a, b in zip(good, noise, strict=False)) + good[len(noise) :]
                )
            )
        ),
    ),
    st.sampled_from(["mp3", "wav", "pcm", "flac"]),
)
def test_any_bytes_measure_or_raise_audio_error(data: bytes, fmt: str) -> None:
    with contextlib.suppress(AudioError):
        assert duration_ms(data, fmt, 24000) >= 0
