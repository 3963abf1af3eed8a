"""The audio cache: finished audio kept by a hash of everything that shaped it.

``cache_key``   sha256 of a canonical JSON of the parts' MiniMax request bodies
                (``SpeechParams.body``: model, MiniMax voice id, every voice and audio
                setting, voice_modify, pronunciations, text normalization, subtitle
                flags, the text), our output format and ``KEY_VERSION``. The friendly
                voice name is not in it: re-pointing a name at a new MiniMax voice makes
                the old entries unreachable by construction.
``Slot``        where an entry lives: ``<voice digest>/<scope>/<key>`` (scope ``u<id>``,
                or ``global``), so purging a voice or a user is a listing by path.
``Entry``       one object: ``ODC1``, the metadata's length (4 bytes), the metadata
                (JSON), the audio. One GET serves a hit.
``AudioCache``  read (validated, re-measured), write, purge, stats, sweep, over a
                ``LocalStore`` (under the data directory) or an ``S3Store`` (the bucket).
``marker_key``  the Redis key that says an entry was (very likely) written for a slot:
                set with the lease's release of the job that writes it, checked by the
                admission script, so a miss (a new text) never reads the store.

What comes back from the store is untrusted: the metadata is validated by a strict
model, must name the key asked for and the format, the audio must match its digest and
be measurable, and the charge is never more than what the audio measures
(``audio.duration_ms``). Anything else is a miss (logged), never a failure and never a
charge from a number we did not check. Callers put every call behind a
``resilience.Dependency`` (the pipeline's ``cache``), so a slow store is a miss too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from odeatts.audio import AudioError, duration_ms
from odeatts.config import Settings
from odeatts.errors import ServiceUnavailable
from odeatts.resilience import Dependency
from odeatts.storage import s3_client

__all__ = [
    "KEY_VERSION",
    "AudioCache",
    "Entry",
    "EntryMeta",
    "Hit",
    "Item",
    "LocalStore",
    "Made",
    "S3Store",
    "Slot",
    "Writes",
    "build_cache",
    "cache_key",
    "charged_ms",
    "decode_entry",
    "encode_entry",
    "marker_key",
    "voice_digest",
]

log = logging.getLogger(__name__)

# Raise it when what an entry's audio means changes (a new join, a new header): every
# old entry becomes unreachable at once, and expires by its TTL.
KEY_VERSION = 1
_MAGIC = b"ODC1"
_HEADER = struct.Struct(">4sI")
_MAX_META_BYTES = 4 * 1024 * 1024  # word timings of a long text: far below this
_HEX64 = r"^[0-9a-f]{64}$"
# No entry holds more than a few hours of audio: a bigger claim is corruption.
_MAX_ENTRY_MS = 6 * 3_600_000
S3_PREFIX = "cache/"


def cache_key(bodies: Sequence[dict[str, Any]], *, fmt: str) -> str:
    """The content address of a job's audio: every part's request body, in order, our
    output format and the key version, as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"v": KEY_VERSION, "format": fmt, "parts": list(bodies)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def voice_digest(minimax_voice_id: str) -> str:
    """A path segment for a MiniMax voice id (ids are MiniMax's or a cloner's choice)."""
    return hashlib.sha256(minimax_voice_id.encode("utf-8")).hexdigest()[:16]


def marker_key(prefix: str, path: str) -> str:
    """The Redis key marking that an entry was written at ``path`` (``Slot.path``, or
    a listed ``Item.path``): a digest, so the key's length is fixed (~150 bytes of
    Redis memory a marker with its TTL)."""
    return f"{prefix}:cached:{hashlib.sha256(path.encode('utf-8')).hexdigest()[:32]}"


def charged_ms(duration: int, fraction: float) -> int:
    """What a hit costs the caller: ``ODEATTS_CACHE_CHARGE`` of its seconds."""
    return round(duration * fraction)


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    voice_id: str
    scope: str  # "u<user id>" or "global"

    @property
    def path(self) -> str:
        return f"{voice_digest(self.voice_id)}/{self.scope}/{self.key}"

    @classmethod
    def of(cls, key: str, voice_id: str, *, user_id: int, shared: bool) -> Slot:
        return cls(key, voice_id, "global" if shared else f"u{user_id}")


class _Timing(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    text: str = Field(max_length=10_000)
    start_seconds: float = Field(ge=0, le=_MAX_ENTRY_MS / 1000)
    end_seconds: float = Field(ge=0, le=_MAX_ENTRY_MS / 1000)


class EntryMeta(BaseModel):
    """An entry's metadata as stored; validated again on every read."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    version: Literal[1] = 1
    key: str = Field(pattern=_HEX64)
    format: str = Field(max_length=16)
    sample_rate: int = Field(ge=1, le=192_000)
    duration_ms: int = Field(ge=1, le=_MAX_ENTRY_MS)
    # What MiniMax billed for the original call(s): the cost a hit saves.
    billed_characters: int | None = Field(None, ge=0, le=10_000_000)
    audio_sha256: str = Field(pattern=_HEX64)
    voice_id: str = Field(max_length=256)
    created: int = Field(ge=0)  # Unix seconds
    timestamps: list[_Timing] | None = None


@dataclass(frozen=True, slots=True)
class Made:
    """What a synthesis made beside its audio, as an entry keeps it: the format, the
    sample rate, the duration charged, what MiniMax billed, the word timings if asked."""

    fmt: str
    sample_rate: int
    duration: int
    billed_characters: int | None
    timestamps: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    meta: EntryMeta
    audio: bytes

    @classmethod
    def made(cls, slot: Slot, audio: bytes, made: Made, *, now: float) -> Entry:
        """Raises pydantic's ValidationError for a value no entry may hold."""
        meta = EntryMeta.model_validate(
            {
                "key": slot.key,
                "format": made.fmt,
                "sample_rate": made.sample_rate,
                "duration_ms": made.duration,
                "billed_characters": made.billed_characters,
                "audio_sha256": hashlib.sha256(audio).hexdigest(),
                "voice_id": slot.voice_id,
                "created": int(now),
                "timestamps": made.timestamps,
            },
            strict=False,
        )
        return cls(meta, audio)


@dataclass(frozen=True, slots=True)
class Hit:
    """An entry that passed every check; ``duration_ms`` is what may be charged."""

    audio: bytes
    duration_ms: int
    sample_rate: int
    billed_characters: int | None
    timestamps: list[dict[str, Any]] | None


class _Corrupt(ValueError):
    pass


def encode_entry(entry: Entry) -> bytes:
    meta = entry.meta.model_dump_json().encode("utf-8")
    return _HEADER.pack(_MAGIC, len(meta)) + meta + entry.audio


def decode_entry(raw: bytes) -> Entry:
    """The stored bytes as an entry, or ``_Corrupt``; nothing in them is believed yet."""
    if len(raw) < _HEADER.size:
        raise _Corrupt("too short")
    magic, size = _HEADER.unpack_from(raw)
    if magic != _MAGIC or size > _MAX_META_BYTES or _HEADER.size + size > len(raw):
        raise _Corrupt("not an entry")
    try:
        meta = EntryMeta.model_validate_json(raw[_HEADER.size : _HEADER.size + size])
    except ValidationError as exc:
        raise _Corrupt(f"metadata: {exc.error_count()} problem(s)") from exc
    return Entry(meta, raw[_HEADER.size + size :])


def checked_hit(entry: Entry, slot: Slot, *, fmt: str, sample_rate: int) -> Hit:
    """The entry as a hit if it is what was asked for and its audio is what it claims;
    the charge is the smaller of the stored duration and what the audio measures."""
    meta = entry.meta
    if meta.key != slot.key or meta.voice_id != slot.voice_id or meta.format != fmt:
        raise _Corrupt("another entry's metadata")
    if hashlib.sha256(entry.audio).hexdigest() != meta.audio_sha256:
        raise _Corrupt("the audio does not match its digest")
    try:
        measured = duration_ms(entry.audio, fmt, sample_rate)
    except AudioError as exc:
        raise _Corrupt(f"the audio is not {fmt}: {exc}") from exc
    if measured <= 0:
        raise _Corrupt("the audio plays for no time")
    return Hit(
        audio=entry.audio,
        duration_ms=min(meta.duration_ms, measured),
        sample_rate=meta.sample_rate,
        billed_characters=meta.billed_characters,
        timestamps=(None if meta.timestamps is None else [t.model_dump() for t in meta.timestamps]),
    )


# ----------------------------------------------------------------------------- stores


@dataclass(frozen=True, slots=True)
class Item:
    path: str
    size: int
    modified: float  # Unix seconds


class Store(Protocol):
    async def get(self, path: str) -> bytes | None: ...
    async def put(self, path: str, data: bytes) -> None: ...
    async def delete(self, paths: list[str]) -> None: ...
    async def listing(self) -> list[Item]: ...


class LocalStore:
    """Entries as files under ``root`` (the embedded default: ``data_dir/cache``).
    A write goes to a temporary file then is renamed: a reader sees all or nothing.
    Over ``max_bytes`` (tracked from the first write's walk), the oldest go first."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._bytes: int | None = None

    def _file(self, path: str) -> Path:
        return self.root / path

    async def get(self, path: str) -> bytes | None:
        return await asyncio.to_thread(self._read, self._file(path))

    @staticmethod
    def _read(file: Path) -> bytes | None:
        try:
            return file.read_bytes()
        except FileNotFoundError:
            return None

    async def put(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._file(path), data)

    def _write(self, file: Path, data: bytes) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=file.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, file)
        if self._bytes is None:
            self._bytes = sum(item.size for item in self._items())
        else:
            self._bytes += len(data)
        if self._bytes > self.max_bytes:
            # Down to 90%: a cap of exactly max_bytes would walk the whole directory
            # again at the very next write, and at every write after it.
            self._bytes = self.cap(self.max_bytes * 9 // 10)

    def cap(self, max_bytes: int) -> int:
        """Delete the oldest entries until at most ``max_bytes`` are kept; the size kept."""
        items = sorted(self._items(), key=lambda item: item.modified)
        total = sum(item.size for item in items)
        for item in items:
            if total <= max_bytes:
                break
            self._file(item.path).unlink(missing_ok=True)
            total -= item.size
        return total

    async def delete(self, paths: list[str]) -> None:
        def remove() -> None:
            for path in paths:
                self._file(path).unlink(missing_ok=True)

        await asyncio.to_thread(remove)
        self._bytes = None

    async def listing(self) -> list[Item]:
        return await asyncio.to_thread(self._items)

    def _items(self) -> list[Item]:
        if not self.root.is_dir():
            return []
        found = []
        for file in self.root.rglob("*"):
            if file.name.startswith(".tmp-") or not file.is_file():
                continue
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue
            found.append(Item(file.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return found


# What S3 answers for nothing there: no such entry, no lifecycle rules yet.
_ABSENT = ("NoSuchKey", "404", "NoSuchLifecycleConfiguration")
_RULE_ID = "odeatts-audio-cache"


class S3Store:
    """Entries as objects under ``cache/`` in the bucket; expiry by the bucket's
    lifecycle rule (``lifecycle``). botocore's errors become ``ServiceUnavailable``."""

    def __init__(self, client: Any, *, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def _boto(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(getattr(self._client, method), **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _ABSENT:
                return None
            raise ServiceUnavailable("The audio cache is unavailable.") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable("The audio cache is unavailable.") from exc

    async def get(self, path: str) -> bytes | None:
        reply = await self._boto("get_object", Bucket=self._bucket, Key=S3_PREFIX + path)
        if reply is None:
            return None
        body: bytes = await asyncio.to_thread(reply["Body"].read)
        return body

    async def put(self, path: str, data: bytes) -> None:
        await self._boto(
            "put_object",
            Bucket=self._bucket,
            Key=S3_PREFIX + path,
            Body=data,
            ContentType="application/octet-stream",
        )

    async def delete(self, paths: list[str]) -> None:
        for start in range(0, len(paths), 1000):
            batch = [{"Key": S3_PREFIX + p} for p in paths[start : start + 1000]]
            await self._boto(
                "delete_objects", Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
            )

    async def listing(self) -> list[Item]:
        items: list[Item] = []
        token: dict[str, str] = {}
        while True:
            page = await self._boto(
                "list_objects_v2", Bucket=self._bucket, Prefix=S3_PREFIX, **token
            )
            for obj in (page or {}).get("Contents", []):
                modified = obj["LastModified"].timestamp()
                items.append(Item(obj["Key"][len(S3_PREFIX) :], int(obj["Size"]), modified))
            if not (page or {}).get("IsTruncated"):
                return items
            token = {"ContinuationToken": page["NextContinuationToken"]}

    async def lifecycle(self, days: int) -> None:
        """The bucket rule that expires entries ``days`` after they were written; the
        bucket's other rules (an operator's for ``audio/``, say) are kept."""
        current = await self._boto("get_bucket_lifecycle_configuration", Bucket=self._bucket)
        others = [r for r in (current or {}).get("Rules", []) if r.get("ID") != _RULE_ID]
        rule = {
            "ID": _RULE_ID,
            "Filter": {"Prefix": S3_PREFIX},
            "Status": "Enabled",
            "Expiration": {"Days": days},
        }
        await self._boto(
            "put_bucket_lifecycle_configuration",
            Bucket=self._bucket,
            LifecycleConfiguration={"Rules": [*others, rule]},
        )


# ----------------------------------------------------------------------------- the cache


@dataclass
class AudioCache:
    store: LocalStore | S3Store
    ttl_days: int
    clock: Any = time.time

    @property
    def ttl_seconds(self) -> int:
        return self.ttl_days * 86_400

    async def read(self, slot: Slot, *, fmt: str, sample_rate: int) -> Hit | None:
        """A checked hit, or None (absent, expired or corrupt: a miss). The store's own
        failures are raised, for the caller's Dependency to count."""
        raw = await self.store.get(slot.path)
        if raw is None:
            return None
        try:
            entry = decode_entry(raw)
            if entry.meta.created + self.ttl_seconds < self.clock():
                return None  # expired; the sweep or the lifecycle rule removes it
            return checked_hit(entry, slot, fmt=fmt, sample_rate=sample_rate)
        except _Corrupt as exc:
            log.warning("audio cache entry %s is unusable (%s): a miss", slot.path, exc)
            return None

    async def write(self, slot: Slot, entry: Entry) -> None:
        await self.store.put(slot.path, encode_entry(entry))

    async def entries(
        self, *, user_id: int | None = None, voice_id: str | None = None
    ) -> list[Item]:
        """The entries, optionally of one user (their own scope) or one MiniMax voice."""
        items = await self.store.listing()
        if voice_id is not None:
            items = [i for i in items if i.path.startswith(voice_digest(voice_id) + "/")]
        if user_id is not None:
            items = [i for i in items if i.path.split("/")[1:2] == [f"u{user_id}"]]
        return items

    async def purge(self, *, user_id: int | None = None, voice_id: str | None = None) -> list[str]:
        """Delete the entries (as ``entries`` selects them); the paths deleted."""
        paths = [i.path for i in await self.entries(user_id=user_id, voice_id=voice_id)]
        await self.store.delete(paths)
        return paths

    async def sweep(self) -> int:
        """Remove entries older than the TTL (the local directory; the bucket's rule
        does this in production). Returns how many were removed."""
        cutoff = self.clock() - self.ttl_seconds
        old = [i.path for i in await self.store.listing() if i.modified < cutoff]
        await self.store.delete(old)
        return len(old)


class Writes:
    """Entries written after the answer, in the background: at most ``limit`` at once
    (beyond that the job is not cached), each within ``timeout`` through the cache's
    ``Dependency``. A write lost (a full queue, a failing store, a worker scaled down)
    is a later miss, nothing more; the caller never waits for it."""

    def __init__(
        self, cache: AudioCache, dependency: Dependency, *, limit: int, timeout: float
    ) -> None:
        self.cache, self.dependency = cache, dependency
        self.limit, self.timeout = limit, timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, slot: Slot, audio: bytes, made: Made, *, job_id: str) -> None:
        if len(self._tasks) >= self.limit:
            log.info("job %s: %d cache writes pending; not cached", job_id, len(self._tasks))
            return
        try:
            entry = Entry.made(slot, audio, made, now=self.cache.clock())
        except ValidationError as exc:  # a value an entry may not hold: delivered, not kept
            log.warning("job %s: not cached (%d odd values)", job_id, exc.error_count())
            return
        task = asyncio.create_task(self._write(job_id, slot, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, job_id: str, slot: Slot, entry: Entry) -> None:
        try:
            await self.dependency.call(partial(self.cache.write, slot, entry), timeout=self.timeout)
        except Exception as exc:
            log.warning("job %s: audio not cached (%s)", job_id, type(exc).__name__)

    async def wait(self) -> None:
        """Until the writes under way have ended (shutdown, tests, benchmarks)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def build_cache(settings: Settings) -> AudioCache | None:
    """The bucket's cache when a bucket is configured, else the data directory's;
    None when the cache is turned off."""
    if not settings.cache_enabled:
        return None
    ttl = settings.cache_ttl_days
    if not settings.bucket_name:
        root = settings.data_dir / "cache"
        return AudioCache(LocalStore(root, max_bytes=settings.cache_max_mb * 1024 * 1024), ttl)
    # The cache's own client: short timeouts and one attempt (a slow cache is a miss;
    # a thread boto3 holds past the job's deadline must end soon).
    client = s3_client(settings, attempts=1, connect_timeout=1, read_timeout=2)
    return AudioCache(S3Store(client, bucket=settings.bucket_name), ttl)
