"""The audio cache's pure parts: the key (what changes it, what does not), an entry's
metadata read back as untrusted input, and the local directory's sweep and size cap."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from odeatts.audio_cache import (
    AudioCache,
    Entry,
    LocalStore,
    Made,
    Slot,
    Writes,
    cache_key,
    charged_ms,
    checked_hit,
    decode_entry,
    encode_entry,
    marker_key,
)
from odeatts.errors import ServiceUnavailable
from odeatts.minimax import SpeechParams
from odeatts.resilience import Breaker, Dependency
from tests.support.sounds import MP3_FRAME_MS, mp3

BASE = SpeechParams(text="Press one for sales.", voice_id="English_Graceful_Lady", model="m")

# Every setting of a request, changed one at a time: each must give another key.
CHANGES: dict[str, Any] = {
    "text": "Press two for support.",
    "voice_id": "moss_audio_new_clone",
    "model": "speech-2.6-hd",
    "speed": 1.1,
    "pitch": 2,
    "volume": 2.0,
    "emotion": "happy",
    "sample_rate": 16000,
    "bitrate": 64000,
    "format": "wav",
    "language_boost": "English",
    "normalize": True,
    "subtitles": True,
    "voice_modify": (("pitch", 10),),
    "pronunciations": (("sales", "sayls"),),
}


def key(*parts: SpeechParams, fmt: str = "mp3") -> str:
    return cache_key([p.body() for p in parts], fmt=fmt)


def test_every_setting_of_the_request_changes_the_key() -> None:
    keys = {name: key(dataclasses.replace(BASE, **{name: v})) for name, v in CHANGES.items()}
    assert key(BASE) not in keys.values()
    assert len(set(keys.values())) == len(CHANGES)
    assert set(CHANGES) | {"subtitles"} >= {f.name for f in dataclasses.fields(SpeechParams)}


def test_the_same_request_is_the_same_key_and_the_format_and_parts_count() -> None:
    twin = SpeechParams(text="Press one for sales.", voice_id="English_Graceful_Lady", model="m")
    assert key(twin) == key(BASE)
    assert len(key(BASE)) == 64
    assert key(BASE, fmt="ulaw") != key(BASE)
    halves = (
        dataclasses.replace(BASE, text="Press one"),
        dataclasses.replace(BASE, text="for sales."),
    )
    assert key(*halves) != key(BASE)


def test_the_scope_is_the_path_not_the_key() -> None:
    mine = Slot.of(key(BASE), BASE.voice_id, user_id=7, shared=False)
    theirs = Slot.of(key(BASE), BASE.voice_id, user_id=8, shared=False)
    shared = Slot.of(key(BASE), BASE.voice_id, user_id=7, shared=True)
    assert len({mine.path, theirs.path, shared.path}) == 3
    assert mine.path.endswith("/u7/" + mine.key) and shared.path.split("/")[1] == "global"
    markers = {marker_key("odeatts", slot.path) for slot in (mine, theirs, shared)}
    assert len(markers) == 3  # the marker is the slot's, scope and all
    assert all(m.startswith("odeatts:cached:") and len(m) == 15 + 32 for m in markers)


def test_a_hit_costs_the_operators_fraction() -> None:
    assert (charged_ms(1000, 1.0), charged_ms(1000, 0.25), charged_ms(1000, 0)) == (1000, 250, 0)


AUDIO = mp3(40)
SLOT = Slot.of("a" * 64, "voice-x", user_id=1, shared=False)
PLAIN = Made("mp3", 44100, 1045, None)


def entry(**changes: Any) -> Entry:
    audio = changes.pop("audio", AUDIO)
    now = changes.pop("now", 1_000_000.0)
    values: dict[str, Any] = {
        "fmt": "mp3",
        "sample_rate": 44100,
        "duration": round(40 * MP3_FRAME_MS),
        "billed_characters": 21,
        "timestamps": [{"text": "Press", "start_seconds": 0.0, "end_seconds": 0.3}],
    }
    return Entry.made(SLOT, audio, Made(**(values | changes)), now=now)


def test_an_entry_reads_back_as_it_was_written() -> None:
    hit = checked_hit(decode_entry(encode_entry(entry())), SLOT, fmt="mp3", sample_rate=44100)
    assert (hit.audio, hit.duration_ms, hit.billed_characters) == (AUDIO, 1045, 21)
    assert hit.timestamps == [{"text": "Press", "start_seconds": 0.0, "end_seconds": 0.3}]


def test_a_stored_duration_above_what_the_audio_plays_is_never_charged() -> None:
    inflated = entry(duration=3_600_000)
    hit = checked_hit(decode_entry(encode_entry(inflated)), SLOT, fmt="mp3", sample_rate=44100)
    assert hit.duration_ms == 1045


def _tampered_meta(raw: bytes, old: bytes, new: bytes) -> bytes:
    size = int.from_bytes(raw[4:8], "big")
    meta = raw[8 : 8 + size].replace(old, new)
    return raw[:4] + len(meta).to_bytes(4, "big") + meta + raw[8 + size :]


GOOD = encode_entry(entry())
CORRUPT = {
    "empty": b"",
    "not an entry": b"RIFF" + GOOD[4:],
    "truncated": GOOD[:20],
    "unknown field": _tampered_meta(GOOD, b'{"version"', b'{"extra":1,"version"'),
    "negative duration": _tampered_meta(GOOD, b'"duration_ms":1045', b'"duration_ms":-5'),
    "string for a number": _tampered_meta(GOOD, b'"sample_rate":44100', b'"sample_rate":"44100"'),
    "another key": _tampered_meta(GOOD, b"a" * 64, b"b" * 64),
    "another format": _tampered_meta(GOOD, b'"format":"mp3"', b'"format":"wav"'),
    "audio changed": GOOD[:-417] + bytes(417),
    "audio not mp3": encode_entry(entry(audio=b"\x00" * 4000)),
}


@pytest.mark.parametrize("raw", CORRUPT.values(), ids=CORRUPT.keys())
async def test_anything_odd_read_back_is_a_miss(tmp_path: Path, raw: bytes) -> None:
    cache = AudioCache(LocalStore(tmp_path, max_bytes=10**9), ttl_days=30, clock=lambda: 1e6)
    (tmp_path / SLOT.path).parent.mkdir(parents=True)
    (tmp_path / SLOT.path).write_bytes(raw)
    assert await cache.read(SLOT, fmt="mp3", sample_rate=44100) is None
    (tmp_path / SLOT.path).write_bytes(GOOD)
    assert await cache.read(SLOT, fmt="mp3", sample_rate=44100) is not None


async def test_an_entry_past_its_ttl_is_a_miss_and_the_sweep_removes_it(tmp_path: Path) -> None:
    now = [1_000_000.0]
    cache = AudioCache(LocalStore(tmp_path, max_bytes=10**9), ttl_days=1, clock=lambda: now[0])
    await cache.write(SLOT, entry(now=now[0]))
    old = Slot.of("c" * 64, "voice-x", user_id=1, shared=False)
    await cache.write(old, Entry.made(old, AUDIO, PLAIN, now=now[0] - 2 * 86400))
    os.utime(tmp_path / old.path, (now[0] - 2 * 86400, now[0] - 2 * 86400))
    assert await cache.read(old, fmt="mp3", sample_rate=44100) is None
    assert await cache.sweep() == 1
    assert [i.path for i in await cache.entries()] == [SLOT.path]


async def test_the_local_directory_keeps_under_its_cap_oldest_first(tmp_path: Path) -> None:
    size = len(GOOD)
    store = LocalStore(tmp_path, max_bytes=3 * size)
    cache = AudioCache(store, ttl_days=30)
    slots = [Slot.of(f"{i:064x}", "v", user_id=1, shared=False) for i in range(5)]
    for i, slot in enumerate(slots):
        await cache.write(slot, Entry.made(slot, AUDIO, PLAIN, now=0))
        os.utime(tmp_path / slot.path, (i, i))  # written one after the other
    kept = sorted(i.path for i in await cache.entries())
    assert kept == sorted(s.path for s in slots[2:])


async def test_purge_by_user_and_by_voice(tmp_path: Path) -> None:
    cache = AudioCache(LocalStore(tmp_path, max_bytes=10**9), ttl_days=30)
    made = [
        Slot.of("d" * 64, "voice-a", user_id=1, shared=False),
        Slot.of("d" * 64, "voice-a", user_id=2, shared=False),
        Slot.of("d" * 64, "voice-b", user_id=1, shared=False),
        Slot.of("d" * 64, "voice-b", user_id=1, shared=True),
    ]
    for slot in made:
        await cache.write(slot, Entry.made(slot, AUDIO, PLAIN, now=0))
    assert len(await cache.purge(user_id=1, voice_id="voice-a")) == 1
    assert len(await cache.purge(voice_id="voice-b")) == 2
    assert [i.path for i in await cache.entries()] == [made[1].path]


@pytest.mark.parametrize("odd", [{"duration": 0}, {"sample_rate": 0}, {"billed_characters": -1}])
def test_an_entry_refuses_values_it_could_not_charge_from(odd: dict[str, Any]) -> None:
    """The pipeline then delivers the audio and keeps no entry (pipeline._remember)."""
    with pytest.raises(ValidationError):
        entry(**odd)


async def test_writes_after_the_answer_are_bounded_and_a_failed_one_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="odeatts.audio_cache")
    release = asyncio.Event()

    class SlowStore(LocalStore):
        async def put(self, path: str, data: bytes) -> None:
            await release.wait()
            raise OSError("disk full")

    cache = AudioCache(SlowStore(tmp_path, max_bytes=10**9), ttl_days=30)
    dependency = Dependency(
        name="audio cache",
        timeout=5,
        error=ServiceUnavailable,
        is_failure=lambda exc: isinstance(exc, OSError | ServiceUnavailable),
        breaker=Breaker("audio cache"),
    )
    writes = Writes(cache, dependency, limit=1, timeout=5)
    writes.submit(SLOT, AUDIO, PLAIN, job_id="first")
    writes.submit(SLOT, AUDIO, PLAIN, job_id="second")  # the queue is full: not kept
    release.set()
    await writes.wait()
    assert "job second: 1 cache writes pending; not cached" in caplog.text
    assert "job first: audio not cached (ServiceUnavailable)" in caplog.text
    assert await cache.entries() == []
