"""The one place that orders the steps of a job, from parsed input to the reply.

speech:  parse -> voice (cached) -> Postgres: authenticate + reserve -> Redis: admit
         -> MiniMax (one call, or several parts for a long text) -> object storage when
         the audio is large or a URL was asked for -> Postgres: settle -> Redis: release
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
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from odeatts import metering
from odeatts.allowance import QuotaState, QuotaView, read_quota_state
from odeatts.audio import AudioError, delivered_ms, join
from odeatts.config import Settings
from odeatts.db import Sessions, database_errors, make_sessionmaker
from odeatts.errors import (
    ConcurrencyLimited,
    InvalidRequest,
    OdeaError,
    RateLimited,
    ServiceUnavailable,
    UpstreamBusy,
    UpstreamUnavailable,
    VoiceNotFound,
)
from odeatts.estimate import estimate_ms
from odeatts.keys import hash_key, looks_like_key
from odeatts.limits import Decision, Limiter
from odeatts.logs import bind
from odeatts.minimax import MiniMaxClient, Speech, SpeechParams, StreamEnd
from odeatts.models import FAILED, REFUSED, Plan, Usage, User, Voice, utcnow
from odeatts.outbox import Charge, Outbox
from odeatts.resilience import Budget, Dependency
from odeatts.schemas import (
    ParsedJob,
    SpeechRequest,
    UsageRequest,
    VoicesRequest,
    check_emotion,
    merge_pronunciations,
)
from odeatts.storage import Storage
from odeatts.text import split_text
from odeatts.voice_cache import VoiceCache, voice_dict

__all__ = ["Dependencies", "Pipeline"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Redis and MiniMax connections opened before the first job (Postgres: the whole pool).
WARM_CONNECTIONS = 4

# A hash no key can have: unknown-shaped keys still cost one indexed lookup, so a
# malformed key and a wrong key take the same time.
_NO_KEY = "0" * 64


@dataclass(frozen=True, slots=True)
class Dependencies:
    """Every external service of the job path, each with its deadline and breaker."""

    db: Dependency
    redis: Dependency
    minimax: Dependency
    storage: Dependency


@dataclass(frozen=True, slots=True)
class _Job:
    """A speech job ready for MiniMax: its voice, its parts and its reservation."""

    id: str
    request: SpeechRequest
    voice: Voice
    parts: list[SpeechParams]
    reservation: metering.Reservation
    budget: Budget

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
    voices: VoiceCache
    deps: Dependencies
    outbox: Outbox
    storage: Storage | None = None
    clock: Callable[[], dt.datetime] = utcnow
    sessions: Sessions = field(init=False, repr=False)
    _drainer: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sessions = make_sessionmaker(self.engine)

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
        opened = await asyncio.gather(
            *(self.engine.connect().start() for _ in range(self.settings.db_pool_size)),
            return_exceptions=True,
        )
        for connection in opened:  # back to the pool, which keeps them
            if isinstance(connection, AsyncConnection):
                await connection.close()
        for connection in opened:
            if isinstance(connection, BaseException):
                raise connection
        await self.voices.reload()

    async def aclose(self) -> None:
        """Close the pools this pipeline opened (tests and orderly shutdown)."""
        if self._drainer is not None:
            self._drainer.cancel()
        for dependency in (self.deps.db, self.deps.redis, self.deps.minimax, self.deps.storage):
            await dependency.aclose()
        await self.limiter.aclose()
        await self.minimax.aclose()
        await self.engine.dispose()

    # ------------------------------------------------------------------ speech
    async def speech(self, job_id: str, request: SpeechRequest) -> dict[str, Any]:
        job = await self._prepare(job_id, request)
        async with self._metered(job):
            speeches = await self.deps.minimax.call(
                partial(self._synthesize, job), budget=job.budget
            )
            bind(trace_id=speeches[0].trace_id)
            audio = _joined([s.audio for s in speeches], request.format)
            duration = sum(s.duration_ms for s in speeches)
            delivery = await self._deliver(job, audio)
            view = await self._settle(
                job, duration, speeches[0].trace_id, sum(s.billed_characters or 0 for s in speeches)
            )
        return {**delivery, **self._metadata(job, duration, speeches[0].sample_rate, view)}

    async def speech_stream(
        self, job_id: str, request: SpeechRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Audio chunks as MiniMax streams them (parts in order), then the metadata."""
        job = await self._prepare(job_id, request)
        sent = bytearray()
        chunks = 0
        async with self._metered(job):
            ends: list[StreamEnd] = []
            self.deps.minimax.check()
            try:
                for index, params in enumerate(job.parts):
                    await self._part_slot(job, index)
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
                            yield {
                                "chunk": chunks,
                                "format": request.format,
                                "audio_base64": base64.b64encode(piece).decode("ascii"),
                            }
                            chunks += 1
            except (asyncio.CancelledError, GeneratorExit):
                await self._charge_delivered(job, bytes(sent))
                raise
            except OdeaError as exc:
                self.deps.minimax.observe(exc)
                exc.details.update(delivered_chunks=chunks, charged_seconds=0)
                raise
            self.deps.minimax.observe(None)
            duration = sum(e.duration_ms for e in ends)
            view = await self._settle(
                job, duration, ends[0].trace_id, sum(e.billed_characters or 0 for e in ends)
            )
        yield {
            "done": True,
            "chunks": chunks,
            **self._metadata(job, duration, ends[0].sample_rate, view),
        }

    async def _prepare(self, job_id: str, request: SpeechRequest) -> _Job:
        """Everything that can refuse a job before anything is reserved, then reserve."""
        budget = Budget(self.settings.job_budget_seconds)
        key_hash = self._key_hash(request)
        voice = self.voices.cached(request.voice) or await self._db(
            partial(self.voices.get, request.voice), budget
        )
        if voice is None:
            await self._authenticate(key_hash, budget)  # 401 before 404
            names = [v.name for v in await self._db(self.voices.active, budget)]
            raise VoiceNotFound(
                f"Unknown voice `{request.voice}`.", details={"field": "voice", "voices": names}
            )
        estimate = estimate_ms(request.text, request.speed)
        self._check_delivery(request, estimate)
        parts = self._parts(request, voice)
        meta = metering.JobMeta(
            job_id=job_id,
            voice=voice.name,
            model=parts[0].model,
            text_chars=len(request.text),
            estimated_ms=estimate,
        )
        reservation = await self._db(
            partial(
                metering.reserve,
                self.sessions,
                key_hash=key_hash,
                job=meta,
                now=self.clock(),
                stale_after=dt.timedelta(seconds=self.settings.lease_ttl_seconds),
            ),
            budget,
        )
        bind(user_id=reservation.caller.user_id)
        words = merge_pronunciations(
            request.pronunciations, reservation.pronunciations, self.voices.pronunciations(voice)
        )
        parts = [replace(p, pronunciations=words) for p in parts] if words else parts
        return _Job(job_id, request, voice, parts, reservation, budget)

    async def _db(
        self,
        work: Callable[[], Awaitable[T]],
        budget: Budget | None = None,
        *,
        urgent: bool = False,
    ) -> T:
        """Postgres, in turn (``urgent``: work that finishes a job goes first)."""
        return await self.deps.db.call(work, budget=budget, urgent=urgent)

    async def _authenticate(self, key_hash: str, budget: Budget | None = None) -> metering.Caller:
        caller = await self._db(
            partial(metering.authenticate, self.sessions, key_hash=key_hash, now=self.clock()),
            budget,
        )
        bind(user_id=caller.user_id)
        return caller

    def _parts(self, request: SpeechRequest, voice: Voice) -> list[SpeechParams]:
        texts = split_text(request.text, self.settings.part_chars)
        if len(texts) > 1 and request.format == "flac":
            raise InvalidRequest(
                f"flac cannot be joined: use mp3, wav or pcm for texts over "
                f"{self.settings.part_chars} characters.",
                details={"field": "format"},
            )
        model = request.model or self.settings.minimax_model
        check_emotion(request.emotion, model)  # before anything is reserved
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
        )
        return [replace(base, text=t) for t in texts]

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
    async def _metered(self, job: _Job) -> AsyncIterator[None]:
        """Admission, then the body; gives back the reservation and the lease on any exit."""
        caller = job.reservation.caller
        try:
            decision = await self._admit(job, caller, len(job.parts[0].text))
        except BaseException as exc:
            # The admission may still run in a stalled Redis: void it, whenever it runs.
            await self.limiter.release(user_id=caller.user_id, lease_id=job.lease_id, void=True)
            await self._release(job.reservation, FAILED, exc)
            raise
        if not decision.allowed:
            error = _refusal(decision, caller)
            await self._release(job.reservation, REFUSED, error)
            raise error
        try:
            yield
        except BaseException as exc:
            # A no-op when the job was already settled (the row is no longer reserved).
            await self._release(job.reservation, FAILED, exc)
            raise
        finally:
            await self.limiter.release(user_id=caller.user_id, lease_id=job.lease_id)

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

    async def _charge_delivered(self, job: _Job, sent: bytes) -> None:
        """A stream the caller stopped: charge what they had received, nothing more."""
        if not sent:
            return
        try:
            duration = delivered_ms(sent, job.request.format, job.request.sample_rate)
            await self._settle(job, duration, None, 0, error_code="cancelled")
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

    # --------------------------------------------------------------- admission
    async def _admit(self, job: _Job, caller: metering.Caller, chars: int) -> Decision:
        """Admission; waits briefly while only our MiniMax account's limit is in the way."""
        waited = 0.0
        while True:
            decision = await self.deps.redis.call(
                partial(
                    self.limiter.admit,
                    user_id=caller.user_id,
                    lease_id=job.lease_id,
                    rpm=caller.allowance.rpm.value,
                    streams=caller.allowance.concurrent_streams.value,
                    chars=chars,
                ),
                budget=job.budget,
            )
            if not _worth_waiting(decision, waited, self.settings.upstream_max_wait_seconds):
                return decision
            waited += await _pause(decision)

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
        self, reservation: metering.Reservation, status: str, exc: BaseException
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
                ),
                urgent=True,
            )
        except OdeaError:
            # The row stays 'reserved' and lapses after the lease TTL: nothing is charged.
            # One line per job, no traceback: the outage itself is logged by the breaker.
            log.warning("could not release reservation %s; it will lapse", reservation.usage_id)

    def _key_hash(self, request: SpeechRequest | VoicesRequest | UsageRequest) -> str:
        plain = request.api_key.get_secret_value()
        return hash_key(plain, self.settings.pepper) if looks_like_key(plain) else _NO_KEY

    # ------------------------------------------------------------ other actions
    async def available_voices(self, request: VoicesRequest) -> dict[str, Any]:
        """The ``voices`` action: the active voices a caller may ask for, filtered."""
        await self._authenticate(self._key_hash(request))
        voices = [
            voice_dict(v)
            for v in await self._db(self.voices.active)
            if (request.language is None or v.language.lower() == request.language.lower())
            and (request.gender is None or v.gender == request.gender)
        ]
        return {"voices": voices}

    async def usage(self, request: UsageRequest) -> dict[str, Any]:
        caller = await self._authenticate(self._key_hash(request))
        state, rows = await self._db(partial(self._usage_rows, caller, request))
        allowance, quota = state.allowance, state.quota
        return {
            "plan": allowance.plan_id,
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
    ) -> tuple[QuotaState, Sequence[Usage]]:
        lease_ttl = dt.timedelta(seconds=self.settings.lease_ttl_seconds)
        with database_errors():
            async with self.sessions() as session:
                user, plan = (
                    await session.execute(
                        select(User, Plan).join(Plan).where(User.id == caller.user_id)
                    )
                ).one()
                state = await read_quota_state(
                    session, user, plan, now=self.clock(), lease_ttl=lease_ttl
                )
                rows = await metering.recent_usage(session, user_id=user.id, limit=request.limit)
        return state, rows


def _joined(parts: list[bytes], fmt: str) -> bytes:
    """One file from the parts; parts that cannot be joined are MiniMax's fault."""
    try:
        return join(parts, fmt)
    except AudioError as exc:
        log.warning("the parts of a long text could not be joined: %s", exc)
        raise UpstreamUnavailable() from exc


def _estimated_bytes(request: SpeechRequest, estimate_ms: int) -> int:
    seconds = estimate_ms / 1000
    if request.format == "mp3":
        return int(seconds * request.bitrate / 8)
    pcm = int(seconds * request.sample_rate * 2)
    return pcm // 2 if request.format == "flac" else pcm


def _pieces(audio: bytes, size: int) -> list[bytes]:
    """Stream chunks no larger than RunPod carries (the caller concatenates them)."""
    return [audio[i : i + size] for i in range(0, len(audio), size)]


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
