"""The one place that orders the steps of a job, from parsed input to the reply.

speech:  parse -> voice (cached) -> Postgres: authenticate + reserve (a job without a
         voice gets the user's default here, then from the cache) -> Redis: admit, which
         also says whether the job's audio cache marker is there (for a key this worker
         has seen reserve: asked beside the reservation, ``_admit_early``) -> only if it
         is: the audio cache (a hit is delivered and settled; MiniMax is asked nothing)
         -> MiniMax (one call, or several parts for a long text) -> object storage when
         the audio is large or a URL was asked for -> Postgres: settle -> Redis: release
         (setting the marker, in the same round trip, when the audio will be cached)
stream:  the same, but audio chunks are yielded as MiniMax streams them, then a final
         item with the metadata and quota
voices:  authenticate -> the active voices (cached), filtered
usage:   authenticate -> the caller's quota (allowance.py) and recent usage rows

Every exit after the reservation gives back what it took: a refusal or a failure
releases the reservation (nothing charged), and the lease is released on success,
failure and cancellation alike. A stream the caller cancels midway is charged for
the audio it had already delivered; a stream MiniMax breaks is charged nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from odeatts import metering
from odeatts.allowance import QuotaState, QuotaView, read_quota_state
from odeatts.audio import AudioError, delivered_ms, join
from odeatts.audio_cache import (
    AudioCache,
    Hit,
    Made,
    Slot,
    Writes,
    cache_key,
    charged_ms,
    marker_key,
)
from odeatts.config import Settings
from odeatts.db import Sessions, database_errors, make_sessionmaker, on_postgres, reading
from odeatts.errors import (
    ConcurrencyLimited,
    InvalidRequest,
    OdeaError,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UpstreamBusy,
    UpstreamUnavailable,
    VoiceNotFound,
)
from odeatts.estimate import estimate_ms
from odeatts.keys import hash_key, key_prefix, looks_like_key
from odeatts.limits import Decision, Limiter, Mark, remember
from odeatts.logs import bind
from odeatts.minimax import MiniMaxClient, Speech, SpeechParams, StreamEnd
from odeatts.models import FAILED, REFUSED, Plan, Usage, User, Voice, utcnow
from odeatts.outbox import Charge, Outbox
from odeatts.resilience import Budget, Dependency
from odeatts.schemas import (
    ULAW_FORMATS,
    ParsedJob,
    SpeechRequest,
    UsageRequest,
    VoicesRequest,
    check_emotion,
    merge_pronunciations,
)
from odeatts.storage import Storage
from odeatts.subtitles import SubtitleFetcher, Timing, offset_timings
from odeatts.text import split_text
from odeatts.voice_cache import VoiceCache, voice_dict

__all__ = ["Dependencies", "Pipeline"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Redis and MiniMax connections opened before the first job (Postgres: the whole pool).
WARM_CONNECTIONS = 4

# Keys whose last reservation a worker remembers, for early admissions (a few hundred
# bytes each).
_MAX_KNOWN = 10_000

# A hash no key can have: unknown-shaped keys still cost one indexed lookup, so a
# malformed key and a wrong key take the same time.
_NO_KEY = "0" * 64


@dataclass(frozen=True, slots=True)
class Dependencies:
    """Every external service of the job path, each with its deadline and breaker."""

    db: Dependency
    redis: Dependency
    minimax: Dependency
    subtitles: Dependency
    storage: Dependency
    cache: Dependency


@dataclass(frozen=True, slots=True)
class _Credential:
    """A caller's key: its lookup hash, and the subject its failed authentications are
    counted under (the key's public prefix, or a digest of malformed input)."""

    hash: str
    subject: str


class _Lease:
    """A job's concurrency lease, given back once: ``release_soon`` starts the release
    (a Redis round trip) so that it runs beside what the job still does; ``release``
    waits for it (the job's answer never precedes its lease's release: the caller's
    next job must find the slot free). ``cached``: the admission found the job's audio
    cache marker "written", so the job reads the cache before anything else; ``seen``:
    it found the marker at all (the slot was asked for before)."""

    __slots__ = ("_lease_id", "_limiter", "_releasing", "_user_id", "cached", "seen")

    def __init__(self, limiter: Limiter, user_id: int, lease_id: str, decision: Decision) -> None:
        self._limiter, self._user_id, self._lease_id = limiter, user_id, lease_id
        self.cached, self.seen = decision.cached, decision.seen
        self._releasing: asyncio.Future[None] | None = None

    def release_soon(self, mark: Mark | None = None) -> None:
        """Start the release; ``mark``: set the audio cache marker in the same round
        trip (the job's audio is about to be written to the cache, or its slot seen)."""
        if self._releasing is None:
            self._releasing = asyncio.ensure_future(
                self._limiter.release(user_id=self._user_id, lease_id=self._lease_id, mark=mark)
            )

    async def release(self) -> None:
        self.release_soon()
        assert self._releasing is not None
        await asyncio.shield(self._releasing)  # a cancelled job still gives its lease back


class _Ask(NamedTuple):
    """What an admission asks of the limiter (``Limiter.admit``'s arguments)."""

    user_id: int
    lease_id: str
    rpm: int
    streams: int
    chars: int
    marker: str | None


@dataclass(frozen=True, slots=True)
class _Early:
    """An admission started beside the reservation, asked with what the key's last
    reservation said of its caller (``Pipeline._admit_early``)."""

    ask: _Ask
    task: asyncio.Future[Decision]


@dataclass(frozen=True, slots=True)
class _Job:
    """A speech job ready for MiniMax: its voice, its parts and its reservation."""

    id: str
    request: SpeechRequest
    voice: Voice
    parts: list[SpeechParams]
    reservation: metering.Reservation
    budget: Budget
    started: float  # time.monotonic() when the job came: its worker time, for ``stats``
    early: _Early | None = None

    @property
    def lease_id(self) -> str:
        """Per attempt: a lease given up by one attempt never blocks the next."""
        return f"{self.id}#{self.reservation.attempt}"


@dataclass
class Pipeline:
    settings: Settings
    engine: AsyncEngine
    limiter: Limiter
    minimax: MiniMaxClient
    subtitles: SubtitleFetcher
    voices: VoiceCache
    deps: Dependencies
    outbox: Outbox
    storage: Storage | None = None
    cache: AudioCache | None = None
    clock: Callable[[], dt.datetime] = utcnow
    sessions: Sessions = field(init=False, repr=False)
    _drainer: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _writes: Writes | None = field(default=None, init=False, repr=False)
    # Per key hash, its last reservation in this worker (newest last, at most
    # _MAX_KNOWN), and the early admissions being undone.
    _known: dict[str, metering.Reservation] = field(default_factory=dict, init=False, repr=False)
    _undoing: set[asyncio.Future[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sessions = make_sessionmaker(self.engine)
        if self.cache is not None:
            self._writes = Writes(
                self.cache,
                self.deps.cache,
                limit=self.settings.cache_pending_writes,
                timeout=4 * self.settings.cache_timeout_seconds,
            )

    async def run(self, job: ParsedJob) -> dict[str, Any]:
        request = job.request
        if isinstance(request, SpeechRequest):
            return await self.speech(job.id, request)
        if isinstance(request, VoicesRequest):
            return await self.available_voices(request)
        return await self.usage(request)

    async def warm_up(self) -> None:
        """Open what the first jobs will use before they come (the worker calls this
        once per loop, see worker.py): the Postgres pool, full (with the dialect's
        first-connection queries done), the voice catalogue, Redis connections and the
        limiter's scripts, MiniMax keep-alive connections. Each part has its
        dependency's deadline and breaker, as a job's calls do (a call past its deadline
        is abandoned, not awaited); a part that fails is logged and left to the jobs."""
        deps = self.deps
        parts = {
            "postgres": deps.db.call(self._warm_db),
            "redis": deps.redis.call(partial(self.limiter.warm_up, WARM_CONNECTIONS)),
            # A keep-alive connection, not speech: the connect timeout, not a synthesis's.
            "minimax": deps.minimax.call(
                partial(self.minimax.warm_up, WARM_CONNECTIONS), timeout=3.0
            ),
        }
        outcomes = await asyncio.gather(*parts.values(), return_exceptions=True)
        for name, outcome in zip(parts, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("warm-up: %s not ready (%s)", name, type(outcome).__name__)

    async def _warm_db(self) -> None:
        size = self.settings.db_pool_size
        if on_postgres(self.engine):
            # Each pooled connection opened and the job path prepared on it, all held at
            # once (so each is another connection); see metering.prepare_job_path.
            now = self.clock()
            done: Sequence[object] = await asyncio.gather(
                *(metering.prepare_job_path(self.engine, now) for _ in range(size)),
                return_exceptions=True,
            )
        else:
            done = await asyncio.gather(
                *(self.engine.connect().start() for _ in range(size)), return_exceptions=True
            )
            for connection in done:  # back to the pool, which keeps them
                if isinstance(connection, AsyncConnection):
                    await connection.close()
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        await self.voices.reload()

    async def aclose(self) -> None:
        """Close the pools this pipeline opened (tests and orderly shutdown)."""
        if self._drainer is not None:
            self._drainer.cancel()
        await self.cache_writes()
        await self.admissions_undone()  # each within Redis's deadline
        deps = self.deps
        for dependency in (
            deps.db,
            deps.redis,
            deps.minimax,
            deps.subtitles,
            deps.storage,
            deps.cache,
        ):
            await dependency.aclose()
        await self.limiter.aclose()
        await self.minimax.aclose()
        await self.subtitles.aclose()
        await self.engine.dispose()

    # ------------------------------------------------------------------ speech
    async def speech(self, job_id: str, request: SpeechRequest) -> dict[str, Any]:
        job = await self._prepare(job_id, request)
        slot = self._cache_slot(job)
        async with self._metered(job, slot) as lease:
            hit = await self._cached(job, slot, lease)
            if hit is not None:
                return await self._speech_from_cache(job, hit)
            return await self._speech_made(job, slot, lease)

    async def _speech_made(self, job: _Job, slot: Slot | None, lease: _Lease) -> dict[str, Any]:
        request = job.request
        asked = time.monotonic()
        speeches = await self.deps.minimax.call(partial(self._synthesize, job), budget=job.budget)
        upstream_ms = _ms_since(asked)
        keep = self._keeps(job, lease)
        lease.release_soon(self._mark(slot, keep))  # MiniMax is done: the stream slot is free
        bind(trace_id=speeches[0].trace_id)
        timings = await self._timings(job, speeches) if request.timestamps else None
        audio = _joined([s.audio for s in speeches], request.format)
        duration = sum(s.duration_ms for s in speeches)
        delivery = await self._deliver(job, audio)
        billed = sum(s.billed_characters or 0 for s in speeches)
        view = await self._settle(
            job, duration, speeches[0].trace_id, billed, upstream_ms=upstream_ms
        )
        sample_rate = speeches[0].sample_rate or request.sample_rate
        kept = slot if keep else None
        self._remember(job, kept, audio, duration, sample_rate, billed or None, timings)
        metadata = self._metadata(job, duration, sample_rate, view)
        return {**delivery, **metadata, **_timestamps(request, timings)}

    async def speech_stream(
        self, job_id: str, request: SpeechRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Audio chunks as MiniMax streams them (parts in order), or from the cache,
        then the metadata, once the lease is given back."""
        job = await self._prepare(job_id, request)
        slot = self._cache_slot(job)
        end: dict[str, Any] | None = None
        async with self._metered(job, slot) as lease:
            hit = await self._cached(job, slot, lease)
            made = self._stream_from_cache(job, hit) if hit else self._stream_made(job, slot, lease)
            async with aclosing(made) as items:  # a caller's cancel reaches the inner one
                async for item in items:
                    if item.get("done"):
                        end = item  # the last item
                    else:
                        yield item
        assert end is not None
        yield end

    async def _stream_made(
        self, job: _Job, slot: Slot | None, lease: _Lease
    ) -> AsyncGenerator[dict[str, Any], None]:
        request = job.request
        sent = bytearray()
        starts: list[int] = []  # where each part's audio begins in ``sent``
        chunks = 0
        ends: list[StreamEnd] = []
        self.deps.minimax.check()
        # MiniMax's time for a stream includes handing its chunks on to RunPod.
        asked = time.monotonic()
        try:
            for index, params in enumerate(job.parts):
                await self._part_slot(job, index)
                starts.append(len(sent))
                gate = partial(self._upstream_slot, job.id, len(params.text))
                async for item in self.minimax.stream(
                    params, request_id=f"{job.id}:{index}", retry_gate=gate
                ):
                    if isinstance(item, StreamEnd):
                        if not ends:  # the first part's trace names the job, as in speech()
                            bind(trace_id=item.trace_id)
                        ends.append(item)
                        continue
                    for piece in _pieces(item, self.settings.stream_chunk_bytes):
                        sent += piece
                        yield _chunk(chunks, request.format, piece)
                        chunks += 1
        except (asyncio.CancelledError, GeneratorExit):
            await self._charge_delivered(job, bytes(sent))
            raise
        except OdeaError as exc:
            self.deps.minimax.observe(exc)
            exc.details.update(delivered_chunks=chunks, charged_seconds=0)
            raise
        self.deps.minimax.observe(None)
        keep = self._keeps(job, lease)
        lease.release_soon(self._mark(slot, keep))  # MiniMax is done, as in speech()
        timings = await self._stream_timings(job, ends, sent) if request.timestamps else None
        duration = sum(e.duration_ms for e in ends)
        billed = sum(e.billed_characters or 0 for e in ends)
        view = await self._settle(
            job, duration, ends[0].trace_id, billed, upstream_ms=_ms_since(asked)
        )
        sample_rate = ends[0].sample_rate or request.sample_rate
        kept = slot if keep else None
        self._remember_parts(
            job, kept, sent, starts, duration, sample_rate, billed or None, timings
        )
        yield {
            "done": True,
            "chunks": chunks,
            **self._metadata(job, duration, sample_rate, view),
            **_timestamps(request, timings),
        }

    async def _prepare(self, job_id: str, request: SpeechRequest) -> _Job:
        """Everything that can refuse a job before anything is reserved, then reserve.

        A job without a voice learns the user's default from the reservation (which
        reads the user row anyway): no round trip of its own."""
        started = time.monotonic()
        budget = Budget(self.settings.job_budget_seconds)
        credential = self._credential(request)
        voice = None
        if request.voice is not None:
            voice = await self._voice(request.voice, budget)
            if voice is None:
                await self._authenticate(credential, budget)  # 401 before 404
                raise await self._unknown_voice(request.voice, budget)
        estimate = estimate_ms(request.text, request.speed)
        self._check_delivery(request, estimate)
        texts, model = self._texts(request)
        meta = metering.JobMeta(
            job_id=job_id,
            voice=request.voice,
            model=model,
            text_chars=len(request.text),
            estimated_ms=estimate,
        )
        early = self._admit_early(credential, job_id, request, voice, texts, model, budget)
        try:
            try:
                reservation = await self._reserve(credential, meta, budget)
            finally:  # forgotten if refused; learnt again, as the newest, if not
                self._known.pop(credential.hash, None)
            remember(self._known, credential.hash, reservation, limit=_MAX_KNOWN)
            bind(user_id=reservation.caller.user_id)
            if voice is None:  # the user's default voice
                voice = await self._voice(reservation.voice, budget)
                if voice is None:  # deactivated since it was set
                    error = await self._unknown_voice(reservation.voice, budget)
                    await self._release(reservation, FAILED, error, started)
                    raise error
        except BaseException:
            self._give_back(early)
            raise
        return self._job(job_id, request, voice, texts, model, reservation, budget, started, early)

    def _job(
        self,
        job_id: str,
        request: SpeechRequest,
        voice: Voice,
        texts: list[str],
        model: str,
        reservation: metering.Reservation,
        budget: Budget,
        started: float,
        early: _Early | None = None,
    ) -> _Job:
        parts = self._parts(request, voice, texts, model)
        words = merge_pronunciations(
            request.pronunciations, reservation.pronunciations, self.voices.pronunciations(voice)
        )
        parts = [replace(p, pronunciations=words) for p in parts] if words else parts
        return _Job(job_id, request, voice, parts, reservation, budget, started, early)

    def _admit_early(
        self,
        credential: _Credential,
        job_id: str,
        request: SpeechRequest,
        voice: Voice | None,
        texts: list[str],
        model: str,
        budget: Budget,
    ) -> _Early | None:
        """The admission, started now, beside the reservation, when this worker has seen
        the key reserve before: asked with what that reservation said (the user, their
        limits, default voice, pronunciations and cache scope) and attempt 1. It is the
        job's admission only if the job's own reservation leads to the very same
        request (``_admit``); else it is undone. The job then waits for the slower of
        the two round trips instead of their sum. A key this worker has not seen
        reserve (new, wrong, refused, or a failure since) goes in turn, as before, and
        so does a job that must wait for a Postgres connection: there is no round trip
        to overlap yet, and the queue's admissions would all run at once, each holding
        its lease and RPM entry while it waits."""
        known = self._known.get(credential.hash)
        gate = self.deps.db.gate
        if known is None or (gate is not None and not gate.open):
            return None
        voice = voice or self.voices.cached(known.voice)
        if voice is None:
            return None
        expected = replace(known, attempt=1)
        guess = self._job(job_id, request, voice, texts, model, expected, budget, time.monotonic())
        ask = self._ask(guess, self._cache_slot(guess))
        admit = partial(self.limiter.admit, **ask._asdict())
        return _Early(ask, asyncio.ensure_future(self.deps.redis.call(admit, budget=budget)))

    def _give_back(self, early: _Early | None) -> None:
        """Undo an early admission the job will not use, in the background: the job's
        answer (its error) does not wait for Redis."""
        if early is not None:
            task = asyncio.ensure_future(self._undo_quietly(early))
            self._undoing.add(task)
            task.add_done_callback(self._undoing.discard)

    async def _undo_quietly(self, early: _Early) -> None:
        with contextlib.suppress(Exception):  # it failed: voided, and logged where it failed
            await self._undo(early)

    async def _undo(self, early: _Early) -> None:
        """Once the early admission is answered: an allowed one is undone (its RPM entry,
        lease and upstream slot); a failed one is voided, as a failed admission is
        (``_metered``), and its error raised."""
        ask = early.ask
        try:
            decision = await early.task
        except BaseException:
            await self.limiter.release(user_id=ask.user_id, lease_id=ask.lease_id, void=True)
            raise
        if decision.allowed:
            await self.limiter.unadmit(
                user_id=ask.user_id, lease_id=ask.lease_id, chars=ask.chars, decision=decision
            )

    async def _voice(self, name: str, budget: Budget) -> Voice | None:
        return self.voices.cached(name) or await self._db(partial(self.voices.get, name), budget)

    async def _voice_names(self, budget: Budget) -> list[str]:
        return [v.name for v in await self._db(self.voices.active, budget)]

    async def _unknown_voice(self, name: str, budget: Budget) -> VoiceNotFound:
        names = await self._voice_names(budget)
        return VoiceNotFound(
            f"Unknown voice `{name}`.", details={"field": "voice", "voices": names}
        )

    async def _reserve(
        self, credential: _Credential, meta: metering.JobMeta, budget: Budget
    ) -> metering.Reservation:
        try:
            return await self._as_caller(
                credential,
                partial(
                    metering.reserve,
                    self.sessions,
                    key_hash=credential.hash,
                    job=meta,
                    now=self.clock(),
                    stale_after=dt.timedelta(seconds=self.settings.lease_ttl_seconds),
                ),
                budget,
            )
        except InvalidRequest as exc:  # no voice given and no default: name the choices
            exc.details["voices"] = await self._voice_names(budget)
            raise

    async def _db(
        self,
        work: Callable[[], Awaitable[T]],
        budget: Budget | None = None,
        *,
        urgent: bool = False,
    ) -> T:
        """Postgres, in turn (``urgent``: work that finishes a job goes first)."""
        return await self.deps.db.call(work, budget=budget, urgent=urgent)

    async def _authenticate(
        self, credential: _Credential, budget: Budget | None = None
    ) -> metering.Caller:
        caller = await self._as_caller(
            credential,
            partial(
                metering.authenticate, self.sessions, key_hash=credential.hash, now=self.clock()
            ),
            budget,
        )
        bind(user_id=caller.user_id)
        return caller

    async def _as_caller(
        self, credential: _Credential, work: Callable[[], Awaitable[T]], budget: Budget | None
    ) -> T:
        """``work`` authenticates the key on Postgres. A failed authentication is counted
        (Redis, one round trip, on failures only); one over the threshold is answered
        ``rate_limited``, as every attempt after it is, before the database is asked."""
        try:
            return await self._db(work, budget)
        except Unauthorized:
            if (retry := await self._count_failure(credential)) is not None:
                raise _too_many_failures(retry) from None
            raise

    async def _count_failure(self, credential: _Credential) -> float | None:
        count = partial(self.limiter.auth_failed, credential.subject)
        try:
            return await self.deps.redis.call(count)
        except ServiceUnavailable:
            # Fail open: the key is wrong and the answer says so. Redis did not count it
            # (away, or its breaker refused the call): the worker's own count does, and
            # throttles the next attempts here.
            self.limiter.auth_failed_here(credential.subject)
            return None

    def _texts(self, request: SpeechRequest) -> tuple[list[str], str]:
        """The text's parts and the model, checked before anything is reserved."""
        texts = split_text(request.text, self.settings.part_chars)
        if len(texts) > 1 and request.format == "flac":
            raise InvalidRequest(
                f"flac cannot be joined: use mp3, wav or pcm for texts over "
                f"{self.settings.part_chars} characters.",
                details={"field": "format"},
            )
        model = request.model or self.settings.minimax_model
        check_emotion(request.emotion, model)
        return texts, model

    def _parts(
        self, request: SpeechRequest, voice: Voice, texts: list[str], model: str
    ) -> list[SpeechParams]:
        base = SpeechParams(
            text="",
            voice_id=voice.minimax_voice_id,
            model=model,
            speed=request.speed,
            pitch=request.pitch,
            volume=request.volume,
            emotion=request.emotion,
            sample_rate=request.sample_rate,
            bitrate=request.bitrate,
            format=request.format,
            language_boost=request.language_boost or voice.language_boost,
            normalize=request.normalize,
            subtitles=request.timestamps,
            voice_modify=_voice_modify(request),
        )
        return [replace(base, text=t) for t in texts]

    async def _timings(self, job: _Job, ends: Sequence[Speech | StreamEnd]) -> list[dict[str, Any]]:
        """Every part's subtitle file, fetched at once under one deadline, on the clock
        of the joined audio (each part starts where the real audio before it ends)."""
        urls = [end.subtitle_url for end in ends]
        if None in urls:
            raise UpstreamUnavailable()

        async def fetch_all() -> list[list[Timing]]:
            return list(
                await asyncio.gather(
                    *(
                        self.subtitles.fetch(url, request_id=f"{job.id}:{i}")
                        for i, url in enumerate(urls)
                        if url is not None
                    )
                )
            )

        parts = await self.deps.subtitles.call(fetch_all, budget=job.budget)
        return offset_timings(parts, [end.measured_ms for end in ends])

    async def _stream_timings(
        self, job: _Job, ends: Sequence[StreamEnd], sent: bytearray
    ) -> list[dict[str, Any]] | None:
        """A stream's timings, if MiniMax gave them: its audio (``sent``) is already
        delivered, so a missing or broken file costs the caller the timings, not the
        audio's charge, and a cancel while they are fetched is charged that audio (a
        failure here must not make streamed audio free)."""
        try:
            return await self._timings(job, ends)
        except OdeaError as exc:
            log.warning("job %s: no timings for the stream (%s)", job.id, exc.code)
            return None
        except asyncio.CancelledError:
            await self._charge_delivered(job, bytes(sent))
            raise

    def _check_delivery(self, request: SpeechRequest, estimate: int) -> None:
        """Refuse up front what could never be delivered, before anything is charged."""
        if request.stream:
            return
        size = _estimated_bytes(request, estimate)
        inline_max = self.settings.inline_max_bytes
        if request.output == "base64" and size > inline_max:
            raise InvalidRequest(
                f"About {size // 1024} KB of audio is too large to return inline "
                f"(limit {inline_max // 1024} KB); ask for output 'url'.",
                details={"field": "output"},
            )
        wants_storage = request.output == "url" or size > inline_max
        if wants_storage and self.storage is None:
            field = "output" if request.output == "url" else "text"
            raise InvalidRequest(
                "This deployment has no object storage: audio must fit inline "
                f"(about {inline_max // 1024} KB).",
                details={"field": field},
            )

    @asynccontextmanager
    async def _metered(self, job: _Job, slot: Slot | None) -> AsyncIterator[_Lease]:
        """Admission, then the body; gives back the reservation and the lease on any exit.
        The admission looks for the slot's cache marker (unless the job asked for no
        cache): found, it takes no slot of the fleet's MiniMax guard and the lease says
        ``cached`` (``_cached`` reads the store); not found, the job is a miss at once.

        The body may give the lease back early (``_Lease.release_soon``) once MiniMax
        is done with the job: the release's round trip then runs beside the settle."""
        caller = job.reservation.caller
        try:
            decision = await self._admit(job, self._ask(job, slot))
        except BaseException as exc:
            # The admission may still run in a stalled Redis: void it, whenever it runs.
            await self.limiter.release(user_id=caller.user_id, lease_id=job.lease_id, void=True)
            await self._release(job.reservation, FAILED, exc, job.started)
            raise
        if not decision.allowed:
            error = _refusal(decision, caller)
            await self._release(job.reservation, REFUSED, error, job.started)
            raise error
        lease = _Lease(self.limiter, caller.user_id, job.lease_id, decision)
        try:
            yield lease
        except BaseException as exc:
            # A no-op when the job was already settled (the row is no longer reserved).
            await self._release(job.reservation, FAILED, exc, job.started)
            raise
        finally:
            await lease.release()

    async def _synthesize(self, job: _Job) -> list[Speech]:
        """All parts, at most ``part_parallelism`` at once; one failure cancels the rest."""
        gate = asyncio.Semaphore(self.settings.part_parallelism)

        async def one(index: int, params: SpeechParams) -> Speech:
            async with gate:
                await self._part_slot(job, index)
                return await self.minimax.synthesize(
                    params,
                    request_id=f"{job.id}:{index}" if len(job.parts) > 1 else job.id,
                    retry_gate=lambda: self._upstream_slot(job.id, len(params.text)),
                )

        if len(job.parts) == 1:  # most jobs: no task, wait and gather around one call
            return [await one(0, job.parts[0])]
        tasks = [asyncio.create_task(one(i, p)) for i, p in enumerate(job.parts)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [r for r in results if isinstance(r, Speech)]

    async def _part_slot(self, job: _Job, index: int) -> None:
        """The first part's upstream slot came with admission; later parts take their own,
        waiting longer than a single request would: a long text can need more than a
        minute of the account's TPM, and the caller is already committed to the job."""
        if index > 0:
            await self._upstream_slot(
                job.id, len(job.parts[index].text), max_wait=self.settings.part_max_wait_seconds
            )

    async def _deliver(self, job: _Job, audio: bytes) -> dict[str, Any]:
        request = job.request
        if request.output != "url" and len(audio) <= self.settings.inline_max_bytes:
            return {"audio_base64": base64.b64encode(audio).decode("ascii")}
        if request.output == "base64" or self.storage is None:
            # The estimate said it would fit; the audio did not. Never send an oversize
            # inline result (RunPod would drop it silently).
            raise InvalidRequest(
                f"The audio ({len(audio) // 1024} KB) is too large to return inline.",
                details={"field": "output"},
            )
        storage = self.storage
        url = await self.deps.storage.call(
            partial(storage.put_audio, audio, job_id=job.id, fmt=request.format), budget=job.budget
        )
        return {"audio_url": url, "url_expires_in": self.storage.expiry_seconds}

    async def _settle(
        self,
        job: _Job,
        duration_ms: int,
        trace_id: str | None,
        billed: int,
        error_code: str | None = None,
        upstream_ms: int | None = None,
        saved: int | None = None,
        *,
        cached: bool = False,
    ) -> QuotaView:
        """Charge the job. The audio is made (and MiniMax has billed us): if Postgres
        cannot take the charge within ``settle_retry_seconds``, keep it in the outbox
        and deliver; only if that fails too is the job an error, charged nothing."""
        charge = Charge(
            job_id=job.id,
            usage_id=job.reservation.usage_id,
            attempt=job.reservation.attempt,
            user_id=job.reservation.caller.user_id,
            duration_ms=duration_ms,
            billed_characters=billed or None,
            trace_id=trace_id,
            settled_at=self.clock().isoformat(),
            error_code=error_code,
            worker_ms=_ms_since(job.started),
            upstream_ms=upstream_ms,
            cached=cached,
            saved_characters=saved,
        )
        settle = partial(metering.settle, self.sessions, charge, caller=job.reservation.caller)
        try:
            view = await self._retrying_db(settle, job.budget)
        except ServiceUnavailable:
            view = await self._defer(job, charge)
        log.info(
            "job %s user %s voice %s: %d ms charged (estimate %d ms, %d parts, trace %s)",
            job.id,
            job.reservation.caller.user_id,
            job.voice.name,
            duration_ms,
            job.reservation.estimated_ms,
            len(job.parts),
            trace_id,
        )
        return view

    async def _retrying_db(self, work: Callable[[], Awaitable[T]], budget: Budget) -> T:
        """Postgres, tried again with backoff for up to ``settle_retry_seconds``; a job's
        last step, so it goes before jobs that are starting."""
        give_up = time.monotonic() + min(self.settings.settle_retry_seconds, budget.remaining())
        pause = 0.2
        while True:
            try:
                return await self._db(work, budget, urgent=True)
            except ServiceUnavailable:
                if time.monotonic() + pause > give_up:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def _defer(self, job: _Job, item: Charge) -> QuotaView:
        await self.deps.redis.call(partial(self.outbox.put, item), budget=job.budget)
        log.warning(
            "job %s: postgres unavailable; charge of %d ms kept in the outbox",
            job.id,
            item.duration_ms,
        )
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain_outbox())
        caller = job.reservation.caller
        return caller.allowance.quota(used_ms=caller.used_ms + item.duration_ms)

    async def _drain_outbox(self) -> None:
        """Apply kept charges as soon as Postgres answers; ends when none are left."""
        while True:
            await asyncio.sleep(self.settings.breaker_cooldown_seconds)
            try:
                await self._db(partial(metering.drain_outbox, self.sessions, self.outbox))
                if not await self.deps.redis.call(self.outbox.pending):
                    return
            except OdeaError:
                continue

    async def _charge_delivered(self, job: _Job, sent: bytes, hit: Hit | None = None) -> None:
        """A stream the caller stopped: charge what they had received, nothing more
        (of a cache hit, the cache's fraction of it)."""
        if not sent:
            return
        try:
            duration = delivered_ms(sent, job.request.format, job.request.sample_rate)
            if hit is None:
                await self._settle(job, duration, None, 0, error_code="cancelled")
                return
            charged = charged_ms(duration, self.settings.cache_charge)
            saved = hit.billed_characters
            await self._settle(job, charged, None, 0, "cancelled", None, saved, cached=True)
        except Exception:
            log.exception("could not charge the delivered part of job %s", job.id)

    def _metadata(
        self, job: _Job, duration_ms: int, sample_rate: int, view: QuotaView
    ) -> dict[str, Any]:
        return {
            "format": job.request.format,
            "duration_seconds": round(duration_ms / 1000, 3),
            "sample_rate": sample_rate or job.request.sample_rate,
            "voice": job.voice.name,
            "characters": len(job.request.text),
            "quota": {
                "used_seconds": view.used_ms / 1000,
                "remaining_seconds": view.remaining_ms / 1000,
            },
            "request_id": job.id,
        }

    # ------------------------------------------------------------- audio cache
    def _cache_slot(self, job: _Job) -> Slot | None:
        """Where this job's audio is cached: keyed by every part's MiniMax request
        (``SpeechParams.body``) and our format, in the user's scope or the shared one.
        None: no cache, or a text longer than ``ODEATTS_CACHE_MAX_CHARS``."""
        if self.cache is None or len(job.request.text) > self.settings.cache_max_chars:
            return None
        key = cache_key([p.body() for p in job.parts], fmt=job.request.format)
        reservation = job.reservation
        shared = self.settings.cache_scope == "global" or reservation.shared_cache
        user_id = reservation.caller.user_id
        return Slot.of(key, job.voice.minimax_voice_id, user_id=user_id, shared=shared)

    def _marker(self, slot: Slot) -> str:
        return marker_key(self.settings.redis_prefix, slot.path)

    def _keeps(self, job: _Job, lease: _Lease) -> bool:
        """Whether a miss's audio is written to the cache: with ``ODEATTS_CACHE_WRITE``
        ``repeat`` only for a slot asked for before (the admission found its marker) or
        a ``cache: false`` refresh; a text said once costs the store nothing, its slot
        is only marked seen (``_mark``). With ``first``, every miss."""
        return self.settings.cache_write == "first" or lease.seen or not job.request.cache

    def _mark(self, slot: Slot | None, written: bool) -> Mark | None:
        """The marker to set with the lease's release: "written" when the job's audio
        will be written to the cache, else "seen". Optimistic: a write that is then
        lost leaves a stale marker, which costs the next job one store read (a miss)
        and the MiniMax guard's slot taken after it."""
        if slot is None or self.cache is None or self._writes is None:
            return None
        return Mark(self._marker(slot), self.cache.ttl_seconds * 1000, written)

    async def _cached(self, job: _Job, slot: Slot | None, lease: _Lease) -> Hit | None:
        """After admission: a checked hit, or None (synthesise). The store is read only
        when the admission found the slot's marker; a miss there (an entry never
        written, purged, expired, corrupt, or a cache that fails or stalls past its
        short deadline) takes the MiniMax guard's slot the admission did not."""
        if slot is None or self.cache is None or not lease.cached:
            return None
        request = job.request
        read = partial(self.cache.read, slot, fmt=request.format, sample_rate=request.sample_rate)
        try:
            hit: Hit | None = await self.deps.cache.call(read, budget=job.budget)
        except Exception as exc:
            log.warning("job %s: audio cache not read (%s): a miss", job.id, type(exc).__name__)
            hit = None
        if hit is None:
            try:
                await self._upstream_slot(job.id, len(job.parts[0].text))
            except UpstreamBusy as busy:  # refused as at admission: nothing was made
                await self._release(job.reservation, REFUSED, busy, job.started)
                raise
        return hit

    async def _speech_from_cache(self, job: _Job, hit: Hit) -> dict[str, Any]:
        """A hit: admitted, leased and charged as any job (at ``ODEATTS_CACHE_CHARGE``
        of its seconds); nothing asked of MiniMax."""
        delivery = await self._deliver(job, hit.audio)
        view = await self._settle_hit(job, hit)
        metadata = self._metadata(job, hit.duration_ms, hit.sample_rate, view)
        return {**delivery, **metadata, **_timestamps(job.request, hit.timestamps), "cached": True}

    async def _stream_from_cache(self, job: _Job, hit: Hit) -> AsyncGenerator[dict[str, Any], None]:
        """A hit streamed as chunks, then the metadata, as a stream from MiniMax is."""
        request = job.request
        chunks = sent = 0
        try:
            for piece in _pieces(hit.audio, self.settings.stream_chunk_bytes):
                sent += len(piece)  # handed over once yielded: a close comes after
                yield _chunk(chunks, request.format, piece)
                chunks += 1
        except (asyncio.CancelledError, GeneratorExit):
            await self._charge_delivered(job, hit.audio[:sent], hit)
            raise
        view = await self._settle_hit(job, hit)
        yield {
            "done": True,
            "chunks": chunks,
            **self._metadata(job, hit.duration_ms, hit.sample_rate, view),
            **_timestamps(request, hit.timestamps),
            "cached": True,
        }

    async def _settle_hit(self, job: _Job, hit: Hit) -> QuotaView:
        charged = charged_ms(hit.duration_ms, self.settings.cache_charge)
        return await self._settle(job, charged, None, 0, saved=hit.billed_characters, cached=True)

    def _remember_parts(
        self,
        job: _Job,
        slot: Slot | None,
        sent: bytearray,
        starts: list[int],
        duration: int,
        sample_rate: int,
        billed: int | None,
        timings: list[dict[str, Any]] | None,
    ) -> None:
        """A stream's parts (where each begins in ``sent``), joined as a reply's are, for
        the cache; cut out only when there is a cache to keep them."""
        if slot is None:
            return
        ends = [*starts[1:], len(sent)]
        parts = [bytes(sent[a:b]) for a, b in zip(starts, ends, strict=True)]
        if not all(parts):
            return
        try:
            audio = join(parts, job.request.format)
        except AudioError:
            return
        self._remember(job, slot, audio, duration, sample_rate, billed, timings)

    def _remember(
        self,
        job: _Job,
        slot: Slot | None,
        audio: bytes,
        duration: int,
        sample_rate: int,
        billed: int | None,
        timings: list[dict[str, Any]] | None,
    ) -> None:
        """Keep the job's audio (with its timings, if asked) for the next time; written
        after the answer (``audio_cache.Writes``)."""
        if self._writes is None or slot is None or (job.request.timestamps and timings is None):
            return
        made = Made(job.request.format, sample_rate, duration, billed, timings)
        self._writes.submit(slot, audio, made, job_id=job.id)

    async def admissions_undone(self) -> None:
        """Wait for the early admissions being undone (``_give_back``): shutdown, tests."""
        await asyncio.gather(*self._undoing)

    async def cache_writes(self) -> None:
        """Wait for the cache writes under way (shutdown, tests, benchmarks)."""
        if self._writes is not None:
            await self._writes.wait()

    # --------------------------------------------------------------- admission
    def _ask(self, job: _Job, slot: Slot | None) -> _Ask:
        """The job's admission request; ``slot``: its audio cache slot, whose marker the
        admission looks for (unless the job asked for no cache)."""
        caller = job.reservation.caller
        marker = self._marker(slot) if slot is not None and job.request.cache else None
        allowance = caller.allowance
        rpm, streams = allowance.rpm.value, allowance.concurrent_streams.value
        return _Ask(caller.user_id, job.lease_id, rpm, streams, len(job.parts[0].text), marker)

    async def _admit(self, job: _Job, ask: _Ask) -> Decision:
        """Admission; waits briefly while only our MiniMax account's limit is in the way.
        An early admission (``_admit_early``) that asked exactly this is the first
        answer, refusals included; one that asked anything else is undone first."""
        decision: Decision | None = None
        if job.early is not None:
            if job.early.ask == ask:
                decision = await job.early.task
            else:
                await self._undo(job.early)
        waited = 0.0
        while True:
            if decision is None:
                admit = partial(self.limiter.admit, **ask._asdict())
                decision = await self.deps.redis.call(admit, budget=job.budget)
            if not _worth_waiting(decision, waited, self.settings.upstream_max_wait_seconds):
                return decision
            waited += await _pause(decision)
            decision = None

    async def _upstream_slot(self, job_id: str, chars: int, max_wait: float | None = None) -> None:
        limit = self.settings.upstream_max_wait_seconds if max_wait is None else max_wait
        waited = 0.0
        while True:
            decision = await self.deps.redis.call(
                partial(self.limiter.acquire_upstream, lease_id=job_id, chars=chars)
            )
            if decision.allowed:
                return
            if not _worth_waiting(decision, waited, limit):
                raise UpstreamBusy(retry_after=decision.retry_after)
            waited += await _pause(decision)

    async def _release(
        self, reservation: metering.Reservation, status: str, exc: BaseException, started: float
    ) -> None:
        code = (
            exc.code
            if isinstance(exc, OdeaError)
            else ("cancelled" if not isinstance(exc, Exception) else "internal")
        )
        try:
            await self._db(
                partial(
                    metering.release,
                    self.sessions,
                    reservation=reservation,
                    status=status,
                    error_code=code,
                    now=self.clock(),
                    worker_ms=_ms_since(started),
                    alert=exc.alert if isinstance(exc, OdeaError) else None,
                ),
                urgent=True,
            )
        except OdeaError:
            # The row stays 'reserved' and lapses after the lease TTL: nothing is charged.
            # One line per job, no traceback: the outage itself is logged by the breaker.
            log.warning("could not release reservation %s; it will lapse", reservation.usage_id)

    def _credential(self, request: SpeechRequest | VoicesRequest | UsageRequest) -> _Credential:
        """The caller's key as the job path uses it; refused at once (no database, no
        Redis) while its prefix, or this malformed input, is throttled."""
        plain = request.api_key.get_secret_value()
        pepper = self.settings.pepper
        if looks_like_key(plain):
            credential = _Credential(hash_key(plain, pepper), key_prefix(plain))
        else:
            # Counted under a keyed digest, never the input itself (it may be a real key
            # mistyped); looked up as _NO_KEY, so it costs what a wrong key costs.
            credential = _Credential(_NO_KEY, "input:" + hash_key(plain, pepper)[:24])
        if (retry := self.limiter.auth_throttled(credential.subject)) is not None:
            raise _too_many_failures(retry)
        return credential

    # ------------------------------------------------------------ other actions
    async def available_voices(self, request: VoicesRequest) -> dict[str, Any]:
        """The ``voices`` action: the active voices a caller may ask for, filtered."""
        await self._authenticate(self._credential(request))
        voices = [
            voice_dict(v)
            for v in await self._db(self.voices.active)
            if (request.language is None or v.language.lower() == request.language.lower())
            and (request.gender is None or v.gender == request.gender)
        ]
        return {"voices": voices}

    async def usage(self, request: UsageRequest) -> dict[str, Any]:
        caller = await self._authenticate(self._credential(request))
        state, rows, default_voice = await self._db(partial(self._usage_rows, caller, request))
        allowance, quota = state.allowance, state.quota
        return {
            "plan": allowance.plan_id,
            "default_voice": default_voice,
            # The caller's monthly seconds include the credit an operator granted them.
            "limits": {
                "monthly_seconds": quota.quota_ms / 1000,
                "rpm": allowance.rpm.value,
                "concurrent_streams": allowance.concurrent_streams.value,
            },
            "quota": {
                "used_seconds": quota.used_ms / 1000,
                "reserved_seconds": quota.reserved_ms / 1000,
                "remaining_seconds": quota.remaining_ms / 1000,
            },
            "cycle": state.cycle_dict(),
            "recent": [_usage_row(r) for r in rows],
        }

    async def _usage_rows(
        self, caller: metering.Caller, request: UsageRequest
    ) -> tuple[QuotaState, Sequence[Usage], str | None]:
        lease_ttl = dt.timedelta(seconds=self.settings.lease_ttl_seconds)
        with database_errors():
            async with reading(self.sessions) as session:
                user, plan = (
                    await session.execute(
                        select(User, Plan).join(Plan).where(User.id == caller.user_id)
                    )
                ).one()
                state = await read_quota_state(
                    session, user, plan, now=self.clock(), lease_ttl=lease_ttl
                )
                rows = await metering.recent_usage(session, user_id=user.id, limit=request.limit)
        return state, rows, user.default_voice


def _ms_since(moment: float) -> int:
    return round((time.monotonic() - moment) * 1000)


def _joined(parts: list[bytes], fmt: str) -> bytes:
    """One file from the parts; parts that cannot be joined are MiniMax's fault."""
    try:
        return join(parts, fmt)
    except AudioError as exc:
        log.warning("the parts of a long text could not be joined: %s", exc)
        raise UpstreamUnavailable() from exc


def _voice_modify(request: SpeechRequest) -> tuple[tuple[str, int | str], ...]:
    """The caller's effects in MiniMax's voice_modify names (sound_effect: sound_effects)."""
    effects = request.effects
    if effects is None:
        return ()
    named = {
        "pitch": effects.pitch,
        "intensity": effects.intensity,
        "timbre": effects.timbre,
        "sound_effects": effects.sound_effect,
    }
    return tuple((name, value) for name, value in named.items() if value is not None)


def _timestamps(request: SpeechRequest, timings: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The result's ``timestamps``, for a job that asked (null: a stream's were lost)."""
    return {"timestamps": timings} if request.timestamps else {}


def _estimated_bytes(request: SpeechRequest, estimate_ms: int) -> int:
    seconds = estimate_ms / 1000
    if request.format == "mp3":
        return int(seconds * request.bitrate / 8)
    if request.format in ULAW_FORMATS:
        return int(seconds * request.sample_rate)
    pcm = int(seconds * request.sample_rate * 2)
    return pcm // 2 if request.format == "flac" else pcm


def _pieces(audio: bytes, size: int) -> list[bytes]:
    """Stream chunks no larger than RunPod carries (the caller concatenates them)."""
    return [audio[i : i + size] for i in range(0, len(audio), size)]


def _chunk(index: int, fmt: str, piece: bytes) -> dict[str, Any]:
    return {"chunk": index, "format": fmt, "audio_base64": base64.b64encode(piece).decode("ascii")}


def _worth_waiting(decision: Decision, waited: float, max_wait: float) -> bool:
    return (
        not decision.allowed
        and decision.reason == "upstream"
        and waited + decision.retry_after <= max_wait
    )


async def _pause(decision: Decision) -> float:
    pause = decision.retry_after + random.uniform(0, 0.05)
    await asyncio.sleep(pause)
    return pause


def _too_many_failures(retry_after: float) -> RateLimited:
    """The same answer for every key under a throttled prefix, whether it exists or not."""
    return RateLimited(
        "Too many failed authentications for this key; wait before trying again.",
        retry_after=retry_after,
    )


def _refusal(decision: Decision, caller: metering.Caller) -> OdeaError:
    if decision.reason == "rate":
        return RateLimited(
            retry_after=decision.retry_after, details={"limit": caller.allowance.rpm.value}
        )
    if decision.reason == "concurrency":
        return ConcurrencyLimited(
            retry_after=decision.retry_after,
            details={"limit": caller.allowance.concurrent_streams.value},
        )
    if decision.reason == "void":  # this attempt's admission was already given up
        return ServiceUnavailable()
    return UpstreamBusy(retry_after=decision.retry_after)


def _usage_row(row: Usage) -> dict[str, Any]:
    return {
        "request_id": row.job_id,
        "created_at": row.created_at.isoformat(),
        "status": row.status,
        "voice": row.voice,
        "characters": row.text_chars,
        "duration_seconds": (row.duration_ms or 0) / 1000,
        "error_code": row.error_code,
    }
