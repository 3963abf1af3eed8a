"""The one place that orders the steps of a job (design.md, "one straight path").

speech:  parse -> voice (cached) -> Postgres: authenticate + reserve -> Redis: admit
         -> MiniMax -> Postgres: settle -> Redis: release the lease
voices:  authenticate -> the active catalogue, filtered
usage:   authenticate -> plan, limits, cycle and recent usage rows

Every exit after the reservation gives back what it took: a refusal or a failure
releases the reservation (nothing charged), and the lease is released on success,
failure and cancellation alike.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odeatts import quota
from odeatts.config import Settings
from odeatts.errors import (
    ConcurrencyLimited,
    OdeaError,
    RateLimited,
    UpstreamBusy,
    VoiceNotFound,
)
from odeatts.estimate import estimate_ms
from odeatts.keys import hash_key, looks_like_key
from odeatts.limits import Decision, Limiter
from odeatts.minimax import MiniMaxClient, Speech, SpeechParams
from odeatts.models import FAILED, REFUSED, Plan, Usage, User, utcnow
from odeatts.schemas import ParsedJob, SpeechRequest, UsageRequest, VoicesRequest
from odeatts.voices import VoiceCatalogue, voice_dict

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

# A hash no key can have: unknown-shaped keys still cost one indexed lookup, so a
# malformed key and a wrong key take the same time.
_NO_KEY = "0" * 64


@dataclass
class Pipeline:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    limiter: Limiter
    minimax: MiniMaxClient
    voices: VoiceCatalogue
    clock: Callable[[], dt.datetime] = utcnow

    async def run(self, job: ParsedJob) -> dict[str, Any]:
        request = job.request
        if isinstance(request, SpeechRequest):
            return await self.speech(job.id, request)
        if isinstance(request, VoicesRequest):
            return await self.list_voices(request)
        return await self.usage(request)

    async def aclose(self) -> None:
        """Close the pools this pipeline opened (tests and orderly shutdown)."""
        await self.limiter.aclose()
        await self.minimax.aclose()
        await self.sessions.kw["bind"].dispose()

    def _key_hash(self, request: SpeechRequest | VoicesRequest | UsageRequest) -> str:
        plain = request.api_key.get_secret_value()
        return hash_key(plain, self.settings.pepper) if looks_like_key(plain) else _NO_KEY

    @property
    def _stale_after(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.lease_ttl_seconds)

    async def speech(self, job_id: str, request: SpeechRequest) -> dict[str, Any]:
        key_hash = self._key_hash(request)
        voice = await self.voices.get(request.voice)
        if voice is None:
            await quota.authenticate(self.sessions, key_hash=key_hash,  # 401 before 404
                                     now=self.clock())
            names = [v.name for v in await self.voices.active()]
            raise VoiceNotFound(f"Unknown voice `{request.voice}`.",
                                details={"field": "voice", "voices": names})
        model = request.model or self.settings.minimax_model
        meta = quota.JobMeta(job_id=job_id, voice=voice.name, model=model,
                             text_chars=len(request.text),
                             estimated_ms=estimate_ms(request.text, request.speed))
        reservation = await quota.reserve(self.sessions, key_hash=key_hash, job=meta,
                                          now=self.clock(), stale_after=self._stale_after)
        params = SpeechParams(
            text=request.text, voice_id=voice.minimax_voice_id, model=model,
            speed=request.speed, pitch=request.pitch, volume=request.volume,
            emotion=request.emotion, sample_rate=request.sample_rate, bitrate=request.bitrate,
            format=request.format, language_boost=request.language_boost or voice.language_boost,
        )
        speech, view = await self._admitted(job_id, reservation, params)
        log.info("job %s user %s voice %s: %d ms charged (estimate %d ms, trace %s)", job_id,
                 reservation.caller.user_id, voice.name, speech.duration_ms,
                 meta.estimated_ms, speech.trace_id)
        return {
            "audio_base64": base64.b64encode(speech.audio).decode("ascii"),
            "format": speech.format,
            "duration_seconds": round(speech.duration_ms / 1000, 3),
            "sample_rate": speech.sample_rate or request.sample_rate,
            "voice": voice.name,
            "characters": len(request.text),
            "quota": {"used_seconds": view.used_ms / 1000,
                      "remaining_seconds": view.remaining_ms / 1000},
            "request_id": job_id,
        }

    async def _admitted(self, job_id: str, reservation: quota.Reservation,
                        params: SpeechParams) -> tuple[Speech, quota.QuotaView]:
        """Admission, synthesis and settlement; releases everything on every other exit."""
        caller = reservation.caller
        try:
            decision = await self._admit(job_id, caller, len(params.text))
        except BaseException as exc:
            await self._release(reservation, FAILED, exc)
            raise
        if not decision.allowed:
            error = _refusal(decision, caller)
            await self._release(reservation, REFUSED, error)
            raise error
        try:
            speech = await self.minimax.synthesize(
                params, request_id=job_id,
                retry_gate=lambda: self._upstream_slot(job_id, len(params.text)))
            view = await quota.settle(self.sessions, reservation=reservation,
                                      duration_ms=speech.duration_ms,
                                      billed_characters=speech.billed_characters,
                                      trace_id=speech.trace_id, now=self.clock())
        except BaseException as exc:
            await self._release(reservation, FAILED, exc)
            raise
        finally:
            await self.limiter.release(user_id=caller.user_id, lease_id=job_id)
        return speech, view

    async def _admit(self, job_id: str, caller: quota.Caller, chars: int) -> Decision:
        """Admission; waits briefly while only our MiniMax account's limit is in the way."""
        waited = 0.0
        while True:
            decision = await self.limiter.admit(user_id=caller.user_id, lease_id=job_id,
                                                rpm=caller.rpm, streams=caller.max_streams,
                                                chars=chars)
            if not _worth_waiting(decision, waited, self.settings.upstream_max_wait_seconds):
                return decision
            pause = decision.retry_after + random.uniform(0, 0.05)
            await asyncio.sleep(pause)
            waited += pause

    async def _upstream_slot(self, job_id: str, chars: int) -> None:
        waited = 0.0
        while True:
            decision = await self.limiter.acquire_upstream(lease_id=job_id, chars=chars)
            if decision.allowed:
                return
            if not _worth_waiting(decision, waited, self.settings.upstream_max_wait_seconds):
                raise UpstreamBusy(retry_after=decision.retry_after)
            pause = decision.retry_after + random.uniform(0, 0.05)
            await asyncio.sleep(pause)
            waited += pause

    async def _release(self, reservation: quota.Reservation, status: str,
                       exc: BaseException) -> None:
        code = exc.code if isinstance(exc, OdeaError) else (
            "cancelled" if not isinstance(exc, Exception) else "internal")
        log.info("job reservation %s released: %s", reservation.usage_id, code)
        try:
            await quota.release(self.sessions, reservation=reservation, status=status,
                                error_code=code, now=self.clock())
        except OdeaError:
            # The row stays 'reserved' and lapses after the lease TTL: nothing is charged.
            log.error("could not release reservation %s; it will lapse", reservation.usage_id)

    async def list_voices(self, request: VoicesRequest) -> dict[str, Any]:
        await quota.authenticate(self.sessions, key_hash=self._key_hash(request),
                                 now=self.clock())
        voices = [
            voice_dict(v) for v in await self.voices.active()
            if (request.language is None or v.language.lower() == request.language.lower())
            and (request.gender is None or v.gender == request.gender)
        ]
        return {"voices": voices}

    async def usage(self, request: UsageRequest) -> dict[str, Any]:
        caller = await quota.authenticate(self.sessions, key_hash=self._key_hash(request),
                                 now=self.clock())
        now = self.clock()
        with quota.database_errors():
            async with self.sessions() as session:
                user, plan = (await session.execute(
                    select(User, Plan).join(Plan).where(User.id == caller.user_id))).one()
                reserved = await quota.live_reserved_ms(session, user_id=user.id,
                                                        since=now - self._stale_after)
                rows = (await session.execute(
                    select(Usage).where(Usage.user_id == user.id)
                    .order_by(Usage.created_at.desc(), Usage.id.desc()).limit(request.limit)
                )).scalars().all()
        view = quota.QuotaView(caller.used_ms, reserved, caller.quota_ms)
        return {
            "plan": plan.id,
            "limits": {"monthly_seconds": caller.quota_ms / 1000, "rpm": caller.rpm,
                       "concurrent_streams": caller.max_streams},
            "quota": {"used_seconds": view.used_ms / 1000, "reserved_seconds": reserved / 1000,
                      "remaining_seconds": view.remaining_ms / 1000},
            "cycle": {"start": user.cycle_start.isoformat(), "end": user.cycle_end.isoformat()},
            "recent": [_usage_row(r) for r in rows],
        }


def _worth_waiting(decision: Decision, waited: float, max_wait: float) -> bool:
    return (not decision.allowed and decision.reason == "upstream"
            and waited + decision.retry_after <= max_wait)


def _refusal(decision: Decision, caller: quota.Caller) -> OdeaError:
    if decision.reason == "rate":
        return RateLimited(retry_after=decision.retry_after, details={"limit": caller.rpm})
    if decision.reason == "concurrency":
        return ConcurrencyLimited(retry_after=decision.retry_after,
                                  details={"limit": caller.max_streams})
    return UpstreamBusy(retry_after=decision.retry_after)


def _usage_row(row: Usage) -> dict[str, Any]:
    return {
        "request_id": row.job_id, "created_at": row.created_at.isoformat(),
        "status": row.status, "voice": row.voice, "characters": row.text_chars,
        "duration_seconds": (row.duration_ms or 0) / 1000, "error_code": row.error_code,
    }
