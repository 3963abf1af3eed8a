"""The worker's runtime: builds the pipeline inside the running event loop, and turns
every outcome of a job into what RunPod expects.

RunPod calls ``asyncio.run`` more than once per process (fitness checks, the job
loop, local tests), so pools are made lazily, per loop: a pool made in one loop is
useless in the next. ``handle`` never raises: an ``OdeaError`` becomes
``{"error": "<json>"}``; anything else is logged with its traceback here and the
caller gets only ``internal``. Cancellation is re-raised after the pipeline has
released what it held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from odeatts.config import Settings
from odeatts.connections import build_limiter, build_minimax, build_redis
from odeatts.db import make_engine, make_sessionmaker
from odeatts.errors import (
    InternalError,
    InvalidRequest,
    OdeaError,
    ServiceUnavailable,
    UpstreamUnavailable,
)
from odeatts.logs import job_context
from odeatts.outbox import MemoryOutbox, RedisOutbox
from odeatts.pipeline import Dependencies, Pipeline
from odeatts.resilience import Breaker, Dependency, Gate
from odeatts.schemas import JOB_ID, SpeechRequest, parse_job
from odeatts.storage import build_storage
from odeatts.voice_cache import VoiceCache

__all__ = ["Worker", "build_dependencies", "build_pipeline"]

log = logging.getLogger(__name__)


def build_dependencies(settings: Settings) -> Dependencies:
    """Deadlines and breakers of the job path (README "Failure behaviour")."""

    def dependency(
        name: str,
        timeout: float,
        error: Callable[[], OdeaError],
        failing: tuple[type[BaseException], ...],
        gate: Gate | None = None,
    ) -> Dependency:
        return Dependency(
            name=name,
            timeout=timeout,
            error=error,
            is_failure=lambda exc: isinstance(exc, failing),
            breaker=Breaker(
                name,
                threshold=settings.breaker_threshold,
                cooldown=settings.breaker_cooldown_seconds,
            ),
            gate=gate,
        )

    unavailable = (ServiceUnavailable, SQLAlchemyError, RedisError, OSError)
    return Dependencies(
        # As many transactions at once as the pool keeps connections: the rest wait in
        # turn here, where a job's settle goes before another job's reserve.
        db=dependency(
            "postgres",
            settings.db_timeout_seconds,
            ServiceUnavailable,
            unavailable,
            Gate(settings.db_pool_size),
        ),
        redis=dependency("redis", settings.redis_timeout_seconds, ServiceUnavailable, unavailable),
        minimax=dependency(
            "minimax", settings.job_budget_seconds, UpstreamUnavailable, (UpstreamUnavailable,)
        ),
        storage=dependency(
            "object storage",
            settings.storage_timeout_seconds,
            ServiceUnavailable,
            (ServiceUnavailable, OSError),
        ),
    )


def build_pipeline(settings: Settings) -> Pipeline:
    """Everything a job needs, bound to the running event loop."""
    engine = make_engine(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        timeout_seconds=settings.db_timeout_seconds,
    )
    redis = build_redis(settings)
    outbox = (
        RedisOutbox(redis, prefix=settings.redis_prefix) if redis is not None else MemoryOutbox()
    )
    return Pipeline(
        settings=settings,
        engine=engine,
        limiter=build_limiter(settings, redis),
        minimax=build_minimax(settings),
        voices=VoiceCache(make_sessionmaker(engine)),
        deps=build_dependencies(settings),
        outbox=outbox,
        storage=build_storage(settings),
    )


class Worker:
    """One per process; hands each RunPod job to the pipeline of the current loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pipeline: Pipeline | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def pipeline(self) -> Pipeline:
        loop = asyncio.get_running_loop()
        if self._pipeline is None or self._loop is not loop:
            self._pipeline, self._loop = build_pipeline(self.settings), loop
        return self._pipeline

    async def aclose(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.aclose()
            self._pipeline = self._loop = None

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """The plain handler: one job, one object (``ODEATTS_HANDLER=plain``)."""
        with _answered(job) as outcome:
            parsed = parse_job(job, max_text_chars=self.settings.max_text_chars)
            if isinstance(parsed.request, SpeechRequest) and parsed.request.stream:
                raise InvalidRequest(
                    "This endpoint does not stream; send stream: false or "
                    "use the streaming endpoint.",
                    details={"field": "stream"},
                )
            return await self.pipeline().run(parsed)
        return outcome.error

    async def handle_stream(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The streaming handler (``ODEATTS_HANDLER=stream``): RunPod sees a generator.

        ``stream: true`` yields audio chunks then a final item; anything else yields its
        one result. An error is yielded as ``{"error": ...}``, which ends the job FAILED.
        The job context spans every step, as RunPod iterates the generator in one task.
        """
        with _answered(job) as outcome:
            parsed = parse_job(job, max_text_chars=self.settings.max_text_chars)
            request = parsed.request
            if isinstance(request, SpeechRequest) and request.stream:
                # aclosing: when RunPod stops consuming (cancel), the pipeline's own
                # generator must close now and charge what it delivered, not at GC time.
                stream = self.pipeline().speech_stream(parsed.id, request)
                async with aclosing(stream) as items:
                    async for item in items:
                        yield item
            else:
                yield await self.pipeline().run(parsed)
        if outcome.error:
            yield outcome.error

    @property
    def handler(self) -> Callable[[dict[str, Any]], Any]:
        """What RunPod is given: it decides by the function's type whether to stream."""
        return self.handle_stream if self.settings.handler_mode == "stream" else self.handle

    def concurrency(self, current: int) -> int:
        """RunPod's concurrency_modifier: jobs are I/O-bound, so run many per worker."""
        return self.settings.max_concurrency


def _job_id(job: Any) -> str | None:
    """The id for logs: only one that parse_job would accept (a NUL or a lone surrogate
    must not reach a log line either)."""
    job_id = job.get("id") if isinstance(job, dict) else None
    if job_id is None:
        return None
    return job_id if isinstance(job_id, str) and JOB_ID.fullmatch(job_id) else "<invalid>"


@dataclass
class _Outcome:
    error: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _answered(job: Any) -> Iterator[_Outcome]:
    """The one place where a job's failure becomes what RunPod sends the caller: an
    ``OdeaError`` its wire form, anything else ``internal`` (the traceback stays in our
    log). Runs the job inside its log context. Cancellation passes through."""
    job_id = _job_id(job)
    outcome = _Outcome()
    with job_context(job_id):
        try:
            yield outcome
        except OdeaError as exc:
            log.info("job %s failed: %s", job_id, exc.code)
            outcome.error = {"error": exc.to_wire()}
        except Exception:
            log.exception("job %s crashed", job_id)
            outcome.error = {"error": InternalError().to_wire()}
