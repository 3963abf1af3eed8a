"""Clients built from the settings: Redis, the limiter, MiniMax and its subtitle files.

The worker and the operators' CLI build their connections here, so neither imports
the other to reach a client (README, "Layout"). Building a client opens nothing:
pools connect lazily, inside whichever event loop first uses them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import ssl
import sys

import httpx
from redis.asyncio import Redis

from odeatts.config import Settings
from odeatts.limits import InProcessLimiter, Limiter, RedisLimiter, UpstreamBudget
from odeatts.minimax import MiniMaxClient
from odeatts.subtitles import TIMEOUT_SECONDS as SUBTITLE_TIMEOUT_SECONDS
from odeatts.subtitles import SubtitleFetcher

__all__ = [
    "build_limiter",
    "build_minimax",
    "build_redis",
    "build_subtitles",
    "redis_connections",
]

log = logging.getLogger(__name__)


def redis_connections(settings: Settings) -> int:
    """The most Redis connections one worker opens: two calls in flight for each job it
    runs at once (its admission or its release, beside an early admission's or its
    undoing), and room for the background (the outbox, releases retried, the warm-up).
    redis-py 8 refuses a call past its pool's limit (100 by default) with
    MaxConnectionsError instead of waiting for a connection: a burst of more than 100
    calls at once (a worker may run up to 512 jobs) failed jobs, and five in a row open
    the Redis breaker for every job of the worker."""
    return 2 * settings.max_concurrency + 16


def build_redis(settings: Settings) -> Redis | None:
    """The job path's Redis (bounded by ``redis_timeout_seconds``); None without REDIS_URL."""
    url = settings.plain_redis_url
    if not url:
        return None
    timeout = settings.redis_timeout_seconds
    return Redis.from_url(
        url,
        max_connections=redis_connections(settings),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        socket_keepalive=True,
    )


def build_limiter(settings: Settings, redis: Redis | None) -> Limiter:
    upstream = UpstreamBudget(rpm=settings.minimax_rpm_limit, tpm=settings.minimax_tpm_limit)
    if redis is not None:
        return RedisLimiter(
            redis,
            lease_ttl_seconds=settings.lease_ttl_seconds,
            upstream=upstream,
            prefix=settings.redis_prefix,
            timeout_seconds=settings.redis_timeout_seconds,
            auth_failures=settings.auth_failures_per_minute,
        )
    log.warning("REDIS_URL is unset: using the in-process limiter (development only)")
    return InProcessLimiter(
        lease_ttl_seconds=settings.lease_ttl_seconds,
        upstream=upstream,
        auth_failures=settings.auth_failures_per_minute,
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default verification (certifi's CAs), loaded once per process: loading the
    CA file costs about 50 ms of CPU, and a worker builds a client per event loop."""
    return httpx.create_ssl_context()


# httpcore asks ``import sniffio`` which async library runs, for every lock, event and
# semaphore it makes: four times a request. httpx 0.28 no longer installs sniffio, and a
# failed import is not remembered: each one searches sys.path again (about 0.1 ms, 0.4 ms
# a job). None in sys.modules is Python's own "known absent": the import fails at once
# and httpcore takes asyncio, as it does without sniffio anyway.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

# How long an idle MiniMax connection is kept: a TLS handshake to MiniMax costs a round
# trip or two and CPU; jobs a few seconds apart should not pay it each time.
KEEPALIVE_SECONDS = 30.0


def build_minimax(settings: Settings) -> MiniMaxClient:
    """One request at a time per job slot (a long text's parts, or jobs beyond the SDK's
    concurrency, wait their turn in the client), every connection kept alive: httpx keeps
    only 20 idle by default, so at 32 jobs in flight a dozen connections were closed
    after each reply and opened again (a new TLS handshake) for the next job."""
    connections = settings.max_concurrency
    http = httpx.AsyncClient(
        base_url=settings.minimax_base_url,
        verify=_tls(),
        timeout=httpx.Timeout(settings.minimax_timeout_seconds, connect=3.0),
        limits=httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
    )
    api_key = settings.minimax_api_key.get_secret_value() if settings.minimax_api_key else ""
    return MiniMaxClient(
        http,
        api_key=api_key,
        group_id=settings.minimax_group_id,
        max_retries=settings.minimax_max_retries,
        retry_base_seconds=settings.minimax_retry_base_seconds,
        read_timeout_seconds=settings.minimax_timeout_seconds,
        connections=connections,
    )


def build_subtitles(settings: Settings) -> SubtitleFetcher:
    """A client of its own for MiniMax's subtitle files: they live on another host (a
    CDN), must get none of our headers, and redirects are not followed."""
    http = httpx.AsyncClient(
        verify=_tls(),
        follow_redirects=False,
        timeout=httpx.Timeout(SUBTITLE_TIMEOUT_SECONDS, connect=3.0),
        limits=httpx.Limits(max_connections=settings.max_concurrency),
    )
    return SubtitleFetcher(http, minimax_base_url=settings.minimax_base_url)
