"""odeatts.mp3, the one MP3 frame parser (worker and emulator): checked against the spec's
tables and against mutagen, an independent reader, on real MP3s the emulator makes at every
sample rate and bitrate we offer."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from array import array
from pathlib import Path

import mutagen.mp3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimax_emulator.encode import SOURCE_RATE, encode
from odeatts import mp3
from odeatts.schemas import BITRATES, SAMPLE_RATES

_TONE = array(
    "h",
    (
        int(8000 * math.sin(2 * math.pi * 440 * i / SOURCE_RATE))
        for i in range(SOURCE_RATE * 2 // 5)
    ),
)  # 0.4 s of 440 Hz


def _made(sample_rate: int, bitrate: int = 32000, channels: int = 1) -> bytes:
    """An MP3 as the emulator makes it (LAME through lameenc)."""
    return encode(_TONE, "mp3", sample_rate, bitrate, channels)


def _mutagen_frame(file: io.BytesIO) -> mp3.Frame:
    """The frame at ``file``'s position as mutagen reads it; moves ``file`` past it."""
    start = file.tell()
    frame = mutagen.mp3.MPEGFrame(file)
    return mp3.Frame(
        start,
        file.tell() - start,
        1152 if frame.version == 1 else 576,
        frame.sample_rate,
        frame.bitrate,
    )


def _mutagen_frames(data: bytes) -> list[mp3.Frame]:
    """Every frame as mutagen reads it, one header at a time."""
    file = io.BytesIO(data)
    mutagen.mp3.skip_id3(file)
    found = []
    while file.tell() < len(data):
        found.append(_mutagen_frame(file))
    return found


def _header(
    version: int, bitrate_index: int, rate_index: int, padding: int = 0, channel_mode: int = 3
) -> bytes:
    """A Layer III header without CRC: version 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5."""
    return bytes(
        [
            0xFF,
            0xE0 | version << 3 | 0b01 << 1 | 1,
            bitrate_index << 4 | rate_index << 2 | padding << 1,
            channel_mode << 6,
        ]
    )


# ----------------------------------------------------------------------- the spec


@pytest.mark.parametrize("version", [3, 2, 0])
def test_every_layer3_header_reads_as_mutagen_reads_it(version: int) -> None:
    for bitrate_index in range(1, 15):
        for rate_index in range(3):
            for padding in (0, 1):
                header = _header(version, bitrate_index, rate_index, padding)
                theirs = _mutagen_frame(io.BytesIO(header + bytes(3000)))
                assert mp3.frame_at(header, 0) == theirs


def test_the_tables_are_the_spec_s() -> None:
    def read(version: int, bitrate_index: int, rate_index: int, padding: int = 0) -> mp3.Frame:
        frame = mp3.frame_at(_header(version, bitrate_index, rate_index, padding), 0)
        assert frame is not None
        return frame

    assert [read(3, i, 0).bitrate // 1000 for i in range(1, 15)] == [
        32,
        40,
        48,
        56,
        64,
        80,
        96,
        112,
        128,
        160,
        192,
        224,
        256,
        320,
    ]
    for lsf in (2, 0):
        assert [read(lsf, i, 0).bitrate // 1000 for i in range(1, 15)] == [
            8,
            16,
            24,
            32,
            40,
            48,
            56,
            64,
            80,
            96,
            112,
            128,
            144,
            160,
        ]
    assert [read(3, 9, i).sample_rate for i in range(3)] == [44100, 48000, 32000]
    assert [read(2, 9, i).sample_rate for i in range(3)] == [22050, 24000, 16000]
    assert [read(0, 5, i).sample_rate for i in range(3)] == [11025, 12000, 8000]
    assert (read(3, 9, 0).samples, read(2, 9, 0).samples, read(0, 5, 0).samples) == (1152, 576, 576)
    # 144 x bitrate / rate bytes in MPEG-1, 72 x in MPEG-2 and 2.5; floored; + padding.
    assert (read(3, 9, 0).length, read(3, 9, 0, 1).length) == (417, 418)
    assert read(3, 9, 2).length == 576
    assert (read(2, 4, 2).length, read(2, 12, 0).length) == (144, 417)  # 32k@16k, 128k@22.05k
    assert read(0, 5, 2).length == 360


@pytest.mark.parametrize(
    "header",
    [
        _header(1, 9, 0),  # version 01 is reserved
        bytes([0xFF, 0xE0 | 3 << 3 | 0b11 << 1 | 1, 0x90, 0xC0]),  # Layer I
        bytes([0xFF, 0xE0 | 3 << 3 | 0b10 << 1 | 1, 0x90, 0xC0]),  # Layer II
        _header(3, 0, 0),  # free format
        _header(3, 15, 0),  # a bad bitrate index
        _header(3, 9, 3),  # a reserved sample rate
        b"\xff\xdb\x90\xc0",  # 10 sync bits, not 11
    ],
)
def test_headers_the_spec_does_not_allow_are_not_frames(header: bytes) -> None:
    assert mp3.frame_at(header + bytes(1000), 0) is None
    assert mp3.frame_at(_header(3, 9, 0)[:3], 0) is None  # a header cut short


@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
@pytest.mark.parametrize("bitrate", BITRATES)
def test_what_the_emulator_makes_reads_as_mutagen_reads_it(sample_rate: int, bitrate: int) -> None:
    data = _made(sample_rate, bitrate)
    frames = mp3.frames(data)
    assert frames == _mutagen_frames(data)
    assert {f.sample_rate for f in frames} == {sample_rate}
    # Without a Xing tag mutagen estimates from the size and the bitrate: padding aside.
    assert mp3.duration_ms(data) == pytest.approx(
        mutagen.mp3.MP3(io.BytesIO(data)).info.length * 1000, abs=1
    )
    assert frames[-1].offset + frames[-1].length == len(data)


# ------------------------------------------------------------------ tags around audio


def _tag_frame(data: bytes, tag: bytes, count: int) -> bytes:
    """A first frame carrying a Xing/Info or VBRI tag where LAME and Fraunhofer put it,
    for an MP3 ``data`` of ``count`` audio frames."""
    first = mp3.frames(data)[0]
    mpeg1, mono = first.samples == 1152, data[3] >> 6 == 3
    body = bytearray(data[:4] + bytes(first.length - 4))
    if tag == b"VBRI":  # version 1, delay, quality, bytes, frames, an empty table
        fields = (
            b"VBRI\x00\x01"
            + bytes(4)
            + len(data).to_bytes(4, "big")
            + count.to_bytes(4, "big")
            + bytes([0, 0, 0, 1, 0, 2, 0, 0])
        )
        body[36 : 36 + len(fields)] = fields
    else:  # the frames field only
        at = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
        body[at : at + 12] = tag + b"\x00\x00\x00\x01" + count.to_bytes(4, "big")
    return bytes(body)


@pytest.mark.parametrize("tag", [b"Info", b"Xing", b"VBRI"])
@pytest.mark.parametrize(
    ("sample_rate", "channels"), [(44100, 1), (44100, 2), (24000, 1), (24000, 2), (8000, 1)]
)
def test_a_tag_frame_first_holds_no_audio(tag: bytes, sample_rate: int, channels: int) -> None:
    data = _made(sample_rate, 64000, channels)
    audio = mp3.frames(data)
    tagged = _tag_frame(data, tag, len(audio)) + data
    assert len(mp3.frames(tagged)) == len(audio)
    assert mp3.duration_ms(tagged) == pytest.approx(mp3.duration_ms(data))
    info = mutagen.mp3.MP3(io.BytesIO(tagged)).info  # reads the tag where we look for it
    assert not info.sketchy
    assert info.length * 1000 == pytest.approx(mp3.duration_ms(tagged))


def test_a_tag_frame_later_on_is_audio() -> None:
    data = _made(24000)
    tag = _tag_frame(data, b"Info", 1)
    assert len(mp3.frames(data + tag)) == len(mp3.frames(data)) + 1


def test_id3_tags_are_skipped() -> None:
    data = _made(16000)
    v23 = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10)
    footer_flag_128_bytes = b"\x04\x00\x10\x00\x00\x01\x00"
    v24_footer = b"ID3" + footer_flag_128_bytes + bytes(128) + b"3DI" + footer_flag_128_bytes
    v1 = b"TAG" + bytes(125)
    expected = mp3.frames(data)
    for tagged, shift in [
        (v23 + data, len(v23)),
        (v24_footer + data, len(v24_footer)),
        (v23 + v24_footer + data, len(v23) + len(v24_footer)),
        (data + v1, 0),
    ]:
        assert [f.offset - shift for f in mp3.frames(tagged)] == [f.offset for f in expected]
    assert _mutagen_frames(v23 + data) == [f._replace(offset=f.offset + len(v23)) for f in expected]


# ---------------------------------------------------------- partial streams and junk


def test_a_prefix_of_a_stream_holds_its_whole_frames() -> None:
    data = _made(22050)
    ends = [f.offset + f.length for f in mp3.frames(data)]
    for cut in range(0, len(data) + 1, 7):
        whole = [end for end in ends if end <= cut]
        assert len(mp3.frames(data[:cut], "prefix")) == len(whole)
        if cut not in ends:
            with pytest.raises(mp3.Mp3Error):
                mp3.frames(data[:cut])


def test_a_cut_off_last_frame_is_refused_whole_and_skipped_tolerantly() -> None:
    data = _made(32000)
    count = len(mp3.frames(data))
    with pytest.raises(mp3.Mp3Error, match="no whole MP3 frame"):
        mp3.frames(data[:-1])
    assert len(mp3.frames(data[:-1], "tolerant")) == count - 1


@pytest.mark.parametrize("junk", [b"junk", b"\xff\xfb", bytes(500)])
def test_junk_is_refused_whole_stops_a_prefix_and_is_skipped_tolerantly(junk: bytes) -> None:
    data = _made(44100)
    frames = mp3.frames(data)
    middle = frames[len(frames) // 2].offset
    spoiled = data[:middle] + junk + data[middle:]
    for bad in (junk + data, spoiled, data + junk):
        with pytest.raises(mp3.Mp3Error):
            mp3.frames(bad)
    assert len(mp3.frames(spoiled, "prefix")) == len(frames) // 2
    assert len(mp3.frames(spoiled, "tolerant")) == len(frames)
    assert len(mp3.frames(junk + data, "tolerant")) == len(frames)


@pytest.mark.parametrize("data", [b"", b"not audio at all", b"ID3\x03\x00\x00\x00\x00\x00\x00"])
def test_no_frames_is_an_error_only_for_a_whole_file(data: bytes) -> None:
    with pytest.raises(mp3.Mp3Error, match="no"):
        mp3.frames(data)
    assert mp3.frames(data, "prefix") == mp3.frames(data, "tolerant") == []
    assert mp3.duration_ms(data, "tolerant") == 0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=2000))
def test_any_bytes_read_or_raise_mp3_error(noise: bytes, at: int) -> None:
    data = _made(16000)
    for sample in (noise, data[:at] + noise + data[at:]):
        for mode in ("prefix", "tolerant"):
            assert sum(f.length for f in mp3.frames(sample, mode)) <= len(sample)
        try:
            frames = mp3.frames(sample)
        except mp3.Mp3Error:
            continue
        assert frames and frames[-1].offset + frames[-1].length <= len(sample)


def test_split_cuts_at_frames_and_joins_back_exactly() -> None:
    data = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10) + _made(24000)
    pieces = mp3.split(data, 0.1)
    assert len(pieces) > 2 and b"".join(pieces) == data
    assert all(mp3.frames(piece) for piece in pieces)
    assert all(mp3.duration_ms(piece) == pytest.approx(120, abs=24) for piece in pieces[:-1])


# ------------------------------------------------------------------------ the boundary


def _python(code: str) -> str:
    """What a fresh interpreter prints for ``code``, run from the project root."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    ).stdout.strip()


def test_the_emulator_takes_the_parser_and_nothing_else_of_the_worker() -> None:
    """minimax_emulator may import odeatts.mp3 and odeatts.g711 (stdlib only), never the
    worker's runtime."""
    emulator = _python(
        "import sys; import minimax_emulator.app, minimax_emulator.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'odeatts'))"
    )
    assert emulator == "['odeatts', 'odeatts.g711', 'odeatts.mp3']"
    parser = _python(
        "import sys; before = set(sys.modules); import odeatts.mp3, odeatts.g711; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}"
        " - set(sys.stdlib_module_names)))"
    )
    assert parser == "['odeatts']"
