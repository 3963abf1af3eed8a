"""Admission: requests per minute and concurrent streams per user, and the fleet-wide
guard that keeps all workers together under our MiniMax account's own limits.

``admit`` answers with a ``Decision``; the caller decides what to raise (upstash's
shape). The same limiter counts failed authentications per key prefix (``auth_failed``)
and says which prefixes are throttled without a round trip (``auth_throttled``): key
guessing must cost the guesser, not our database (docs/security.md). Two
implementations share that interface:

``RedisLimiter``     production. One Lua script, one round trip: it drops what has left
                     the windows, checks the user's RPM, the user's streams and the
                     account's upstream RPM/TPM, and records all three only if all pass.
                     Time is Redis's own clock, so workers with skewed clocks agree.
``InProcessLimiter`` the embedded default for a newcomer's machine: the same rules in
                     this process only. Production settings refuse it.

RPM is an exact sliding log (a sorted set of admission times): no burst slips through
at a window edge. A lease is a member of a sorted set scored by its expiry, so a
worker killed with SIGKILL loses its leases when they expire, not by luck. Upstream
slots carry their character count in the member name, so the TPM sum needs no
second structure. A retry of a MiniMax call takes another upstream slot
(``acquire_upstream``) because MiniMax counts it like any other request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, NamedTuple, Protocol, get_args

from redis.asyncio import Redis
from redis.exceptions import RedisError

from odeatts.errors import ServiceUnavailable

__all__ = [
    "AUTH_FAILURES_PER_MINUTE",
    "WINDOW_MS",
    "Decision",
    "InProcessLimiter",
    "Limiter",
    "Mark",
    "RedisLimiter",
    "UpstreamBudget",
    "remember",
]

# Failed authentications a key prefix (or one malformed input) may have in a window
# before further attempts are throttled; ODEATTS_AUTH_FAILURES_PER_MINUTE sets it.
AUTH_FAILURES_PER_MINUTE = 10
# Subjects one process remembers; past it the least recently failed are forgotten
# (a guesser varying the prefix must not grow a worker's memory without bound).
_MAX_SUBJECTS = 10_000
# Audio cache markers the in-process limiter remembers (~200 bytes each).
_MAX_MARKERS = 50_000

log = logging.getLogger(__name__)

WINDOW_MS = 60_000

# Key layout (prefix defaults to "odeatts"):
#   {prefix}:rpm:{user_id}     ZSET member=<lease>:<µs>, score=admission ms
#   {prefix}:leases:{user_id}  ZSET member=<lease (RunPod job id)>, score=expiry ms
#   {prefix}:upstream          ZSET member=<lease>:<µs>:<chars>, score=admission ms (fleet-wide)
#   {prefix}:authfail:{subject} ZSET member=<µs>:<nonce>, score=failure ms; at most the
#                              threshold's newest failures (what decides the block)
#   {prefix}:cached:{digest}   STRING, for the cache TTL, set with a lease's release and
#                              read by the admission (audio_cache.marker_key): "1" an
#                              audio cache entry was (very likely) written for this slot;
#                              "0" the slot was asked for, nothing written (SET NX: a
#                              "0" never overwrites a "1")
#   {prefix}:void:{lease}      STRING, for one lease TTL: this admission was given up by its
#                              worker (an error or a timeout); if the script is still queued
#                              in a stalled Redis, it must not take the lease when it runs
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
"""
# Expects up_key, up_rpm, up_tpm, chars, window, now; returns early when refused.
_UPSTREAM_CHECK = """
redis.call('ZREMRANGEBYSCORE', up_key, '-inf', now - window)
if up_rpm > 0 and redis.call('ZCARD', up_key) >= up_rpm then
  local oldest = redis.call('ZRANGE', up_key, 0, 0, 'WITHSCORES')
  return {0, 'upstream', 0, tonumber(oldest[2]) + window - now, 0}
end
if up_tpm > 0 then
  local entries = redis.call('ZRANGE', up_key, 0, -1, 'WITHSCORES')
  local sum = 0
  for i = 1, #entries, 2 do sum = sum + tonumber(string.match(entries[i], ':(%d+)$')) end
  if sum > 0 and sum + chars > up_tpm then
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if sum - freed + chars <= up_tpm then
        return {0, 'upstream', 0, tonumber(entries[i + 1]) + window - now, 0}
      end
    end
    return {0, 'upstream', 0, window, 0}
  end
end
"""
_ADMIT = (
    _NOW
    + """
local rpm_key, lease_key, up_key, void_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', void_key) == 1 then
  return {0, 'void', 0, 0, 0}
end
local rpm, streams, ttl, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local window, up_rpm, up_tpm, chars = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
    tonumber(ARGV[8])
redis.call('ZREMRANGEBYSCORE', rpm_key, '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', lease_key, '-inf', now)
local used = redis.call('ZCARD', rpm_key)
if used >= rpm then
  local oldest = redis.call('ZRANGE', rpm_key, 0, 0, 'WITHSCORES')
  return {0, 'rate', 0, tonumber(oldest[2]) + window - now, 0}
end
if redis.call('ZSCORE', lease_key, lease) == false
    and redis.call('ZCARD', lease_key) >= streams then
  return {0, 'concurrency', 0, 1000, 0}
end
-- KEYS[5], if given: the audio cache's marker. "0": the slot was asked for before
-- (seen, 2), nothing written. Any other value: an entry was (very likely) written (1),
-- so the job will read the cache first and takes no upstream slot now.
local cached, mark = 0, 0
if KEYS[5] then
  local value = redis.call('GET', KEYS[5])
  if value == '0' then
    mark = 2
  elseif value then
    cached, mark = 1, 1
  end
end
if cached == 0 then
"""
    + _UPSTREAM_CHECK
    + """end
redis.call('ZADD', rpm_key, now, lease .. ':' .. stamp)
redis.call('ZADD', lease_key, now + ttl, lease)
if cached == 0 then
  redis.call('ZADD', up_key, now, lease .. ':' .. stamp .. ':' .. chars)
  redis.call('PEXPIRE', up_key, window)
end
redis.call('PEXPIRE', rpm_key, window)
redis.call('PEXPIRE', lease_key, ttl)
return {1, 'ok', rpm - used - 1, 0, mark, stamp}
"""
)
_UPSTREAM = (
    _NOW
    + """
local up_key, lease = KEYS[1], ARGV[1]
local window, up_rpm, up_tpm, chars = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5])
"""
    + _UPSTREAM_CHECK
    + """
redis.call('ZADD', up_key, now, lease .. ':' .. stamp .. ':' .. chars)
redis.call('PEXPIRE', up_key, window)
return {1, 'ok', 0, 0, 0}
"""
)

# Voids an admission its worker gave up on (an error or a timeout: the script may still
# be queued in a stalled Redis): whenever the admission runs, before or after this, it
# ends with no lease, no request in the user's window and no slot of our account. Its
# own members start with "<lease>:" (the upstream slots of a MiniMax retry are named by
# the job id, not the lease, and stay). The windows hold a minute of entries at most, and
# are searched only up to _VOID_SCAN of them (our account's window is as large as its
# RPM limit, or unbounded without one): past that, the entry lapses with its minute.
_VOID_SCAN = 1000
_VOID = """
local void_key, lease_key, rpm_key, up_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, lease, scan = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
redis.call('SET', void_key, 1, 'PX', ttl)
redis.call('ZREM', lease_key, lease)
local prefix = lease .. ':'
for _, key in ipairs({rpm_key, up_key}) do
  if redis.call('ZCARD', key) <= scan then
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if string.sub(member, 1, #prefix) == prefix then
        redis.call('ZREM', key, member)
      end
    end
  end
end
return 1
"""

# Records one failed authentication of a subject; returns {failures in the window, ms
# until fewer than the threshold remain (0 while under it)}. Only the newest `limit`
# failures are kept: they alone decide when the subject is free again.
_AUTH_FAILED = (
    _NOW
    + """
local key, limit, window, nonce = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
redis.call('ZADD', key, now, stamp .. ':' .. nonce)
redis.call('PEXPIRE', key, window)
local count = redis.call('ZCARD', key)
if count < limit then
  return {count, 0}
end
if count > limit then
  redis.call('ZREMRANGEBYRANK', key, 0, count - limit - 1)
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {count, tonumber(oldest[2]) + window - now}
"""
)

Reason = Literal["ok", "rate", "concurrency", "upstream", "void"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    remaining: int  # the user's requests left in the current window after this one
    retry_after: float  # seconds; 0 when allowed
    # The cache marker given said "written": read the cache first; no upstream slot was
    # taken.
    cached: bool = False
    # The cache marker given was there at all: the slot was asked for before (within the
    # cache TTL), so a miss now is a repeat (``ODEATTS_CACHE_WRITE=repeat`` writes it).
    seen: bool = False
    # An admission's own mark in the limiter's records (Redis: its time stamp in the
    # RPM and upstream entries), so that ``unadmit`` removes exactly what it added.
    stamp: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamBudget:
    """Our MiniMax account's limits, shared by every worker (0 = unlimited)."""

    rpm: int = 60
    tpm: int = 20_000


class Mark(NamedTuple):
    """An audio cache marker to set with a release: ``written`` (the job's audio is
    being written to the cache) or only seen (set if absent: never over "written")."""

    key: str
    ttl_ms: int
    written: bool


class Limiter(Protocol):
    async def admit(
        self,
        *,
        user_id: int,
        lease_id: str,
        rpm: int,
        streams: int,
        chars: int,
        marker: str | None = None,
    ) -> Decision:
        """Check and record one request, taking a lease and an upstream slot for a
        MiniMax request of ``chars`` characters on success.
        ``marker``: the job's audio cache marker; if it is there, the decision says
        ``cached`` and no upstream slot is taken (the job reads the cache first, and
        takes one with ``acquire_upstream`` if that is a miss after all)."""
        ...

    async def acquire_upstream(self, *, lease_id: str, chars: int) -> Decision:
        """One more upstream slot (a retry of a MiniMax call)."""
        ...

    async def unadmit(self, *, user_id: int, lease_id: str, chars: int, decision: Decision) -> None:
        """Undo an admission ``admit`` allowed, as if it had never been made: its RPM
        entry, its lease and its upstream slot go. For an admission made ahead of the
        reservation that then said otherwise (pipeline.py, *early admission*). Never
        raises: what cannot be done now is retried in the background, and what is
        never done expires with its window (a minute) or its lease TTL."""
        ...

    async def release(
        self, *, user_id: int, lease_id: str, void: bool = False, mark: Mark | None = None
    ) -> None:
        """Give a lease back (idempotent). ``void``: the admission itself failed or timed
        out, so its script may still run later; whenever it runs, it must end with no
        lease, no request counted and no slot of our account taken (``mark`` is then
        not set). ``mark``: set this audio cache marker in the same round trip (the
        job's audio is being cached, or its slot was seen). Never raises: what cannot
        be done now is retried in the background."""
        ...

    async def warm_up(self, connections: int) -> None:
        """Open what the first admissions need (a worker's warm-up)."""
        ...

    async def auth_failed(self, subject: str) -> float | None:
        """Count one failed authentication of ``subject`` (a key's public prefix, or a
        digest of malformed input). None: answer it ``unauthorized``; seconds: the
        subject was over its threshold already, answer ``rate_limited``. Reaching the
        threshold also throttles the subject in this process (``auth_throttled``)."""
        ...

    def auth_failed_here(self, subject: str) -> None:
        """Count one failed authentication in this process only: ``auth_failed`` could
        not be asked (Redis away, or its breaker open). Reaching the threshold throttles
        the subject here, as ``auth_failed`` does."""
        ...

    def auth_throttled(self, subject: str) -> float | None:
        """Seconds ``subject`` stays throttled, as this process knows without asking
        anyone (no round trip): checked before a key costs the database anything."""
        ...

    async def aclose(self) -> None: ...


_REASONS: dict[str, Reason] = {reason: reason for reason in get_args(Reason)}


def _decision(raw: object) -> Decision:
    """The script's reply, checked: ``[allowed 0|1, reason, remaining, retry ms,
    marker 0|1|2]`` (marker: 0 none or not asked, 1 written, 2 seen). Anything else is
    a Redis failure (RedisError), never a decision made up."""
    match raw:
        case [
            0 | 1 as allowed,
            bytes() | str() as reason,
            int() as remaining,
            int() as retry,
            0 | 1 | 2 as mark,
            *rest,
        ] if type(allowed) is int and type(mark) is int and _stamp(rest) is not None:
            text = reason.decode() if isinstance(reason, bytes) else reason
            if text in _REASONS:
                reply = (bool(allowed), _REASONS[text], remaining, retry / 1000)
                return Decision(*reply, mark == 1, mark > 0, _stamp(rest) or "")
    raise RedisError(f"unexpected reply from the admission script: {raw!r:.120}")


def _stamp(rest: list[object]) -> str | None:
    """The admission's stamp (its 6th field; absent from a refusal), or None if the
    reply is not one the script gives."""
    match rest:
        case []:
            return ""
        case [bytes() | str() as stamp] if len(stamp) <= 32:
            return stamp.decode() if isinstance(stamp, bytes) else stamp
    return None


class RedisLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        lease_ttl_seconds: int,
        upstream: UpstreamBudget,
        prefix: str = "odeatts",
        timeout_seconds: float = 1.0,
        auth_failures: int = AUTH_FAILURES_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = lease_ttl_seconds * 1000
        self._upstream = upstream
        self._timeout = timeout_seconds
        self._admit = redis.register_script(_ADMIT)
        self._acquire = redis.register_script(_UPSTREAM)
        self._auth_script = redis.register_script(_AUTH_FAILED)
        self._void = redis.register_script(_VOID)
        self._auth = _FailureLog(auth_failures, clock)
        self._retries: set[asyncio.Task[None]] = set()

    def _user_keys(self, user_id: int) -> list[str]:
        return [f"{self._prefix}:rpm:{user_id}", f"{self._prefix}:leases:{user_id}"]

    @property
    def _upstream_key(self) -> str:
        return f"{self._prefix}:upstream"

    async def admit(
        self,
        *,
        user_id: int,
        lease_id: str,
        rpm: int,
        streams: int,
        chars: int,
        marker: str | None = None,
    ) -> Decision:
        up = self._upstream
        args: list[int | str] = [
            rpm,
            streams,
            self._ttl_ms,
            lease_id,
            WINDOW_MS,
            up.rpm,
            up.tpm,
            chars,
        ]
        keys = [*self._user_keys(user_id), self._upstream_key, self._void_key(lease_id)]
        if marker is not None:
            keys.append(marker)
        try:
            return _decision(await self._admit(keys=keys, args=args))
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def acquire_upstream(self, *, lease_id: str, chars: int) -> Decision:
        up = self._upstream
        try:
            return _decision(
                await self._acquire(
                    keys=[self._upstream_key], args=[lease_id, WINDOW_MS, up.rpm, up.tpm, chars]
                )
            )
        except RedisError as exc:
            raise _unavailable(exc) from exc

    def _void_key(self, lease_id: str) -> str:
        return f"{self._prefix}:void:{lease_id}"

    async def unadmit(self, *, user_id: int, lease_id: str, chars: int, decision: Decision) -> None:
        rpm_key, lease_key = self._user_keys(user_id)
        member = f"{lease_id}:{decision.stamp}"

        async def undo() -> None:  # a pipeline forgets its commands once executed
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(rpm_key, member)
            pipe.zrem(lease_key, lease_id)
            if not decision.cached:  # a job that would read the cache first took no slot
                pipe.zrem(self._upstream_key, f"{member}:{chars}")
            await pipe.execute()

        await self._in_background_if_need_be(user_id, undo)

    async def release(
        self, *, user_id: int, lease_id: str, void: bool = False, mark: Mark | None = None
    ) -> None:
        await self._in_background_if_need_be(
            user_id, partial(self._release_once, user_id, lease_id, void, mark)
        )

    async def _in_background_if_need_be(
        self, user_id: int, work: Callable[[], Awaitable[object]]
    ) -> None:
        """``work`` (idempotent: it gives something back) now, within the deadline, or,
        if Redis fails or is slow, again in the background until it is done."""
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for runs the call as a task of
            # its own; a late Redis call is cancelled either way (no 10 s cancel there).
            async with asyncio.timeout(self._timeout):
                await work()
        except (RedisError, TimeoutError) as exc:
            log.info(
                "could not give back to Redis for user %s now (%s); retrying in the background",
                user_id,
                type(exc).__name__,
            )
            task = asyncio.create_task(self._later(work))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _release_once(
        self, user_id: int, lease_id: str, void: bool, mark: Mark | None
    ) -> None:
        rpm_key, lease_key = self._user_keys(user_id)
        if void:  # a job that gave its admission up has no mark to set
            keys = [self._void_key(lease_id), lease_key, rpm_key, self._upstream_key]
            await self._void(keys=keys, args=[self._ttl_ms, lease_id, _VOID_SCAN])
            return
        if mark is None:
            await self._redis.zrem(lease_key, lease_id)
            return
        # One round trip, no MULTI/EXEC: the keys are independent. MULTI cost 55 us of
        # CPU more a release, on every miss since misses mark their slot.
        pipe = self._redis.pipeline(transaction=False)
        # "0" (seen) only where nothing is: never over a "1".
        pipe.set(mark.key, 1 if mark.written else 0, px=mark.ttl_ms, nx=not mark.written)
        pipe.zrem(lease_key, lease_id)
        await pipe.execute()

    async def _later(self, work: Callable[[], Awaitable[object]]) -> None:
        """Until Redis answers, at most for a lease TTL (after which the lease is gone)."""
        deadline = time.monotonic() + self._ttl_ms / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            try:
                async with asyncio.timeout(self._timeout):
                    await work()
                return
            except (RedisError, TimeoutError):
                continue

    async def warm_up(self, connections: int) -> None:
        """``connections`` connections, open in the pool, and both scripts cached in
        Redis (else the first EVALSHA after a Redis restart costs a second round trip)."""
        await asyncio.gather(*(self._redis.ping() for _ in range(connections)))
        for script in (_ADMIT, _UPSTREAM, _AUTH_FAILED, _VOID):
            await self._redis.script_load(script)

    async def auth_failed(self, subject: str) -> float | None:
        limit = self._auth.limit
        args: list[int | str] = [limit, WINDOW_MS, secrets.token_hex(4)]
        try:
            raw = await self._auth_script(keys=[f"{self._prefix}:authfail:{subject}"], args=args)
            count, retry_ms = _failures(raw)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if retry_ms > 0:  # at or over the threshold, across the fleet
            self._auth.block(subject, retry_ms / 1000)
        return retry_ms / 1000 if count > limit else None

    def auth_failed_here(self, subject: str) -> None:
        self._auth.failed(subject)

    def auth_throttled(self, subject: str) -> float | None:
        return self._auth.throttled(subject)

    async def aclose(self) -> None:
        for task in list(self._retries):
            task.cancel()
        await self._redis.aclose()


def _failures(raw: object) -> tuple[int, int]:
    """The failure script's reply, checked: ``[failures in the window, retry ms]``."""
    match raw:
        case [int() as count, int() as retry_ms]:
            return count, retry_ms
    raise RedisError(f"unexpected reply from the failure script: {raw!r:.120}")


def _unavailable(exc: Exception) -> ServiceUnavailable:
    log.error("redis unavailable: %s", type(exc).__name__)
    return ServiceUnavailable()


class _Window:
    """A sliding log of (time, weight) for the in-process limiter."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()

    def trim(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - WINDOW_MS / 1000:
            self.entries.popleft()

    def wait_for(self, now: float, limit: int, weight_limit: int, weight: int) -> float | None:
        """Seconds until a request of ``weight`` fits; None when it fits now."""
        if limit and len(self.entries) >= limit:
            return self.entries[0][0] + WINDOW_MS / 1000 - now
        total = sum(w for _, w in self.entries)
        if weight_limit and total and total + weight > weight_limit:
            freed = 0
            for at, w in self.entries:
                freed += w
                if total - freed + weight <= weight_limit:
                    return at + WINDOW_MS / 1000 - now
            return WINDOW_MS / 1000
        return None


class _FailureLog:
    """Failed authentications per subject, in this process: the embedded limiter's
    whole count, and the Redis limiter's memory of the subjects it throttles (so a
    throttled guesser costs neither Redis nor Postgres) and its count while Redis is
    away. Keeps the newest ``limit`` failures of at most ``_MAX_SUBJECTS`` subjects."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}

    def failed(self, subject: str) -> float | None:
        """Count one failure; seconds throttled if it was over the threshold already."""
        now = self._clock()
        times = self._failures.pop(subject, None) or deque(maxlen=self.limit)
        while times and times[0] <= now - WINDOW_MS / 1000:
            times.popleft()
        over = len(times) >= self.limit
        times.append(now)
        remember(self._failures, subject, times)
        if len(times) >= self.limit:  # free again when the oldest of these leaves the window
            self.block(subject, times[0] + WINDOW_MS / 1000 - now)
        return self.throttled(subject) if over else None

    def block(self, subject: str, seconds: float) -> None:
        if self.throttled(subject) is None:  # once per subject and block, not per attempt
            log.warning(
                "authentication: %d failures in a minute for %s; throttled for %.0f s",
                self.limit,
                subject,
                seconds,
            )
        until = self._clock() + seconds
        remember(self._until, subject, max(until, self._until.pop(subject, until)))

    def throttled(self, subject: str) -> float | None:
        until = self._until.get(subject)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            del self._until[subject]
            return None
        return left


def remember(
    table: dict[str, Any], subject: str, value: Any, *, limit: int = _MAX_SUBJECTS
) -> None:
    """Insert as the newest entry (the caller pops it first), forgetting the oldest
    beyond ``limit``."""
    table[subject] = value
    while len(table) > limit:
        del table[next(iter(table))]


class InProcessLimiter:
    """The same rules kept in this process; for development on a bare machine only."""

    def __init__(
        self,
        *,
        lease_ttl_seconds: int,
        upstream: UpstreamBudget,
        clock: Callable[[], float] = time.monotonic,
        auth_failures: int = AUTH_FAILURES_PER_MINUTE,
    ) -> None:
        self._ttl = float(lease_ttl_seconds)
        self._upstream_budget = upstream
        self._clock = clock
        self._admitted: dict[int, _Window] = {}
        self._leases: dict[int, dict[str, float]] = {}
        self._upstream = _Window()
        self._auth = _FailureLog(auth_failures, clock)
        # The audio cache's markers this process set (True: written), newest last; it
        # forgets the oldest beyond _MAX_MARKERS (a forgotten slot is only "not seen").
        self._marks: dict[str, bool] = {}

    async def admit(
        self,
        *,
        user_id: int,
        lease_id: str,
        rpm: int,
        streams: int,
        chars: int,
        marker: str | None = None,
    ) -> Decision:
        """A ``marker`` is taken as written: the embedded cache is a local directory,
        where looking costs a file open, so every job given one looks first (entries
        outlive the process; its markers do not). ``seen``: this process set it."""
        now = self._clock()
        window = self._admitted.setdefault(user_id, _Window())
        window.trim(now)
        self._upstream.trim(now)
        leases = {k: v for k, v in self._leases.get(user_id, {}).items() if v > now}
        self._leases[user_id] = leases
        if (wait := window.wait_for(now, rpm, 0, 1)) is not None:
            return Decision(False, "rate", 0, wait)
        if lease_id not in leases and len(leases) >= streams:
            return Decision(False, "concurrency", 0, 1.0)
        budget = self._upstream_budget
        if (
            marker is None
            and (wait := self._upstream.wait_for(now, budget.rpm, budget.tpm, chars)) is not None
        ):
            return Decision(False, "upstream", 0, wait)
        window.entries.append((now, 1))
        if marker is None:
            self._upstream.entries.append((now, chars))
        leases[lease_id] = now + self._ttl
        seen = marker is not None and marker in self._marks
        left = rpm - len(window.entries)
        return Decision(True, "ok", left, 0.0, marker is not None, seen, stamp=repr(now))

    async def acquire_upstream(self, *, lease_id: str, chars: int) -> Decision:
        now = self._clock()
        self._upstream.trim(now)
        budget = self._upstream_budget
        if (wait := self._upstream.wait_for(now, budget.rpm, budget.tpm, chars)) is not None:
            return Decision(False, "upstream", 0, wait)
        self._upstream.entries.append((now, chars))
        return Decision(True, "ok", 0, 0.0)

    async def unadmit(self, *, user_id: int, lease_id: str, chars: int, decision: Decision) -> None:
        at = float(decision.stamp)
        with contextlib.suppress(KeyError, ValueError):
            self._admitted[user_id].entries.remove((at, 1))
        if not decision.cached:
            with contextlib.suppress(ValueError):
                self._upstream.entries.remove((at, chars))
        self._leases.get(user_id, {}).pop(lease_id, None)

    async def release(
        self, *, user_id: int, lease_id: str, void: bool = False, mark: Mark | None = None
    ) -> None:
        self._leases.get(user_id, {}).pop(lease_id, None)
        if mark is not None:
            written = self._marks.pop(mark.key, False) or mark.written
            remember(self._marks, mark.key, written, limit=_MAX_MARKERS)

    async def auth_failed(self, subject: str) -> float | None:
        return self._auth.failed(subject)

    def auth_failed_here(self, subject: str) -> None:
        self._auth.failed(subject)

    def auth_throttled(self, subject: str) -> float | None:
        return self._auth.throttled(subject)

    async def warm_up(self, connections: int) -> None:
        return None

    async def aclose(self) -> None:
        return None
