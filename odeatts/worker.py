"""The worker's runtime: builds the pipeline inside the running event loop, and turns
every outcome of a job into what RunPod expects.

RunPod calls ``asyncio.run`` more than once per process (fitness checks, the job
loop, local tests), so pools are made lazily, per loop: a pool made in one loop is
useless in the next. ``handle`` never raises: an ``OdeaError`` becomes
``{"error": "<json>"}``; anything else is logged with its traceback here and the
caller gets only ``internal``. Cancellation is re-raised after the pipeline has
released what it held.

Cold start. Importing this module imports none of the job path's clients (SQLAlchemy,
redis, httpx: about 0.7 s); handler.main calls ``preload`` before the SDK starts, so
the SDK asks for a job only when the worker can serve one. (Importing them in a thread
while the SDK starts took the first job sooner but answered it no sooner: the two
threads share one GIL, and the job waited for the imports; scripts/bench_overhead.py.)
The SDK's first call of the concurrency modifier is made on the loop that will run the
jobs, just before it asks for the first one: the worker then builds the pipeline on
that loop and warms it up (``Pipeline.warm_up``: the Postgres pool, Redis, MiniMax
keep-alive connections, the voice catalogue) while that request is out. A job that
comes meanwhile waits for the warm-up rather than opening connections of its own, so
the first job is served like the tenth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from odeatts.config import Settings
from odeatts.errors import (
    InternalError,
    InvalidRequest,
    OdeaError,
    ServiceUnavailable,
    UpstreamUnavailable,
)
from odeatts.logs import job_context
from odeatts.schemas import JOB_ID, ParsedJob, SpeechRequest, parse_job

if TYPE_CHECKING:
    from odeatts.pipeline import Dependencies, Pipeline

__all__ = ["Worker", "build_dependencies", "build_pipeline", "import_job_path"]

log = logging.getLogger(__name__)


def import_job_path() -> None:
    """Import every module a job needs (and the clients' libraries); idempotent."""
    import odeatts.audio_cache
    import odeatts.connections
    import odeatts.db
    import odeatts.outbox
    import odeatts.pipeline
    import odeatts.resilience
    import odeatts.storage
    import odeatts.voice_cache  # noqa: F401


def build_dependencies(settings: Settings) -> Dependencies:
    """Deadlines and breakers of the job path (README "Failure behaviour")."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from odeatts.pipeline import Dependencies
    from odeatts.resilience import Breaker, Dependency, Gate
    from odeatts.subtitles import TIMEOUT_SECONDS as SUBTITLE_TIMEOUT_SECONDS

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
        subtitles=dependency(
            "minimax subtitles",
            SUBTITLE_TIMEOUT_SECONDS,
            UpstreamUnavailable,
            (UpstreamUnavailable,),
        ),
        storage=dependency(
            "object storage",
            settings.storage_timeout_seconds,
            ServiceUnavailable,
            (ServiceUnavailable, OSError),
        ),
        # A lookup's deadline is short: past it the job is a miss, not a failure.
        cache=dependency(
            "audio cache",
            settings.cache_timeout_seconds,
            ServiceUnavailable,
            (ServiceUnavailable, OSError),
        ),
    )


def build_pipeline(settings: Settings) -> Pipeline:
    """Everything a job needs, bound to the running event loop."""
    from odeatts.audio_cache import build_cache
    from odeatts.connections import build_limiter, build_minimax, build_redis, build_subtitles
    from odeatts.db import make_engine, make_sessionmaker
    from odeatts.outbox import MemoryOutbox, RedisOutbox
    from odeatts.pipeline import Pipeline
    from odeatts.storage import build_storage
    from odeatts.voice_cache import VoiceCache

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
        subtitles=build_subtitles(settings),
        voices=VoiceCache(make_sessionmaker(engine)),
        deps=build_dependencies(settings),
        outbox=outbox,
        storage=build_storage(settings),
        cache=build_cache(settings),
    )


class Worker:
    """One per process; hands each RunPod job to the pipeline of the current loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pipeline: Pipeline | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warming: asyncio.Task[None] | None = None
        self._warming_loop: asyncio.AbstractEventLoop | None = None

    def preload(self) -> None:
        """Import the job path now (handler.main, before the SDK starts)."""
        import_job_path()

    def pipeline(self) -> Pipeline:
        loop = asyncio.get_running_loop()
        if self._pipeline is None or self._loop is not loop:
            self._pipeline, self._loop = build_pipeline(self.settings), loop
        return self._pipeline

    async def ready(self) -> Pipeline:
        """The pipeline of this loop, warmed up if a warm-up runs on this loop. A failed
        warm-up is no job's failure: each job then connects as it would have anyway."""
        warming = self._warming
        if warming is not None and self._warming_loop is asyncio.get_running_loop():
            await asyncio.shield(warming)  # a job cancelled meanwhile leaves it running
        return self.pipeline()

    def warm_up_soon(self) -> None:
        """Start warming up the pipeline of the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._warming_loop is loop:
            return
        self._warming_loop = loop
        self._warming = loop.create_task(self._warm_up(), name="odeatts-warm-up")

    async def _warm_up(self) -> None:
        started = asyncio.get_running_loop().time()
        try:
            await self.pipeline().warm_up()
        except Exception as exc:
            log.warning("warm-up failed (%s); jobs connect as they come", type(exc).__name__)
            return
        log.info("warmed up in %.0f ms", (asyncio.get_running_loop().time() - started) * 1000)

    async def aclose(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            self._warming = self._warming_loop = None
        if self._pipeline is not None:
            await self._pipeline.aclose()
            self._pipeline = self._loop = None

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """The plain handler: one job, one object (``ODEATTS_HANDLER=plain``)."""
        job = self._local(job)
        with _answered(job) as outcome:
            parsed = self._parse(job)
            if isinstance(parsed.request, SpeechRequest) and parsed.request.stream:
                raise InvalidRequest(
                    "This endpoint does not stream; send stream: false or "
                    "use the streaming endpoint.",
                    details={"field": "stream"},
                )
            return await (await self.ready()).run(parsed)
        return outcome.error

    async def handle_stream(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The streaming handler (``ODEATTS_HANDLER=stream``): RunPod sees a generator.

        ``stream: true`` yields audio chunks then a final item; anything else yields its
        one result. An error is yielded as ``{"error": ...}``, which ends the job FAILED.
        The job context spans every step, as RunPod iterates the generator in one task.
        """
        job = self._local(job)
        with _answered(job) as outcome:
            parsed = self._parse(job)
            request = parsed.request
            if isinstance(request, SpeechRequest) and request.stream:
                # aclosing: when RunPod stops consuming (cancel), the pipeline's own
                # generator must close now and charge what it delivered, not at GC time.
                stream = (await self.ready()).speech_stream(parsed.id, request)
                async with aclosing(stream) as items:
                    async for item in items:
                        yield item
            else:
                yield await (await self.ready()).run(parsed)
        if outcome.error:
            yield outcome.error

    def _local(self, job: dict[str, Any]) -> dict[str, Any]:
        return local_job(job, production=self.settings.env == "production")

    def _parse(self, job: dict[str, Any]) -> ParsedJob:
        return parse_job(
            job,
            max_text_chars=self.settings.max_text_chars,
            default_model=self.settings.minimax_model,
        )

    @property
    def handler(self) -> Callable[[dict[str, Any]], Any]:
        """What RunPod is given: it decides by the function's type whether to stream."""
        return self.handle_stream if self.settings.handler_mode == "stream" else self.handle

    def concurrency(self, current: int) -> int:
        """RunPod's concurrency_modifier: jobs are I/O-bound, so run many per worker.

        The SDK calls it on its job loop before it asks for the first job: the moment
        to warm that loop's pipeline up (README "Benchmarks" for the figure chosen)."""
        with contextlib.suppress(RuntimeError):  # outside a running loop: nothing to warm
            self.warm_up_soon()
        return self.settings.max_concurrency


# The id the RunPod SDK gives a job run with `python handler.py --test_input ...` that
# names none (runpod/serverless/modules/rp_local.py).
LOCAL_TEST_ID = "local_test"


def local_job(job: dict[str, Any], *, production: bool) -> dict[str, Any]:
    """Outside production, a ``--test_input`` job gets an id of its own each run: the
    SDK gives every such job the same id, which our ledger would answer with
    ``duplicate_job`` from the second run on. Production ids are never touched."""
    if production or not isinstance(job, dict) or job.get("id") != LOCAL_TEST_ID:
        return job
    return {**job, "id": f"{LOCAL_TEST_ID}-{uuid.uuid4().hex[:12]}"}


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
