"""Admission: requests per minute and concurrent streams, per user.

``admit`` answers with a ``Decision``; the caller decides what to raise (upstash's
shape). Two implementations share that interface:

``RedisLimiter``     production. One Lua script, one round trip: it drops what has left
                     the window, checks both limits, and records the request and the
                     lease only if both pass. Time is Redis's own clock, so workers with
                     skewed clocks still agree on one window.
``InProcessLimiter`` the embedded default for a newcomer's machine: the same rules in
                     this process only. Production settings refuse it.

RPM is an exact sliding log (a sorted set of admission times): no burst slips through
at a window edge. A lease is a member of a sorted set scored by its expiry, so a
worker killed with SIGKILL loses its leases when they expire, not by luck.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from odeatts.errors import ServiceUnavailable

__all__ = ["Decision", "Limiter", "RedisLimiter", "InProcessLimiter", "WINDOW_MS"]

log = logging.getLogger(__name__)

WINDOW_MS = 60_000

# Key layout (prefix defaults to "odeatts"):
#   {prefix}:rpm:{user_id}     ZSET member=<lease id>:<admission µs>, score=admission ms
#   {prefix}:leases:{user_id}  ZSET member=<lease id (RunPod job id)>, score=expiry ms
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm_key, lease_key = KEYS[1], KEYS[2]
local rpm, streams, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[5])
local lease = ARGV[4]
redis.call('ZREMRANGEBYSCORE', rpm_key, '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', lease_key, '-inf', now)
local used = redis.call('ZCARD', rpm_key)
if used >= rpm then
  local oldest = redis.call('ZRANGE', rpm_key, 0, 0, 'WITHSCORES')
  return {0, 'rate', 0, tonumber(oldest[2]) + window - now}
end
local held = redis.call('ZCARD', lease_key)
if redis.call('ZSCORE', lease_key, lease) == false and held >= streams then
  return {0, 'concurrency', 0, 1000}
end
redis.call('ZADD', rpm_key, now, lease .. ':' .. t[1] .. t[2])
redis.call('ZADD', lease_key, now + ttl, lease)
redis.call('PEXPIRE', rpm_key, window)
redis.call('PEXPIRE', lease_key, ttl)
return {1, 'ok', rpm - used - 1, 0}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Literal["ok", "rate", "concurrency"]
    remaining: int  # requests left in the current window after this one
    retry_after: float  # seconds; 0 when allowed


class Limiter(Protocol):
    async def admit(self, *, user_id: int, lease_id: str, rpm: int, streams: int) -> Decision:
        """Check and record one request, taking a lease on success."""
        ...

    async def release(self, *, user_id: int, lease_id: str) -> None:
        """Give a lease back (idempotent)."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class RedisLimiter:
    def __init__(self, redis: Redis, *, lease_ttl_seconds: int, prefix: str = "odeatts") -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = lease_ttl_seconds * 1000
        self._admit = redis.register_script(_ADMIT)

    def _keys(self, user_id: int) -> list[str]:
        return [f"{self._prefix}:rpm:{user_id}", f"{self._prefix}:leases:{user_id}"]

    async def admit(self, *, user_id: int, lease_id: str, rpm: int, streams: int) -> Decision:
        args = [rpm, streams, self._ttl_ms, lease_id, WINDOW_MS]
        try:
            allowed, reason, remaining, retry_ms = await self._admit(
                keys=self._keys(user_id), args=args
            )
        except RedisError as exc:
            raise _unavailable(exc) from exc
        reason = reason.decode() if isinstance(reason, bytes) else reason
        return Decision(bool(allowed), reason, int(remaining), int(retry_ms) / 1000)

    async def release(self, *, user_id: int, lease_id: str) -> None:
        try:
            await self._redis.zrem(self._keys(user_id)[1], lease_id)
        except RedisError as exc:
            # The lease lapses by its TTL; the slot is lost only until then.
            log.warning("could not release lease of user %s: %s", user_id, type(exc).__name__)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()


def _unavailable(exc: Exception) -> ServiceUnavailable:
    log.error("redis unavailable: %s", type(exc).__name__)
    return ServiceUnavailable()


class InProcessLimiter:
    """The same rules kept in this process; for development on a bare machine only."""

    def __init__(self, *, lease_ttl_seconds: int, clock: object = time.monotonic) -> None:
        self._ttl = float(lease_ttl_seconds)
        self._clock = clock
        self._admitted: dict[int, deque[float]] = {}
        self._leases: dict[int, dict[str, float]] = {}

    async def admit(self, *, user_id: int, lease_id: str, rpm: int, streams: int) -> Decision:
        now = self._clock()  # type: ignore[operator]
        window = self._admitted.setdefault(user_id, deque())
        while window and window[0] <= now - WINDOW_MS / 1000:
            window.popleft()
        leases = {k: v for k, v in self._leases.get(user_id, {}).items() if v > now}
        self._leases[user_id] = leases
        if len(window) >= rpm:
            return Decision(False, "rate", 0, window[0] + WINDOW_MS / 1000 - now)
        if lease_id not in leases and len(leases) >= streams:
            return Decision(False, "concurrency", 0, 1.0)
        window.append(now)
        leases[lease_id] = now + self._ttl
        return Decision(True, "ok", rpm - len(window), 0.0)

    async def release(self, *, user_id: int, lease_id: str) -> None:
        self._leases.get(user_id, {}).pop(lease_id, None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
