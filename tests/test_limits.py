"""The admission rules on their own, with no worker: the in-process limiter and the
Redis script (real Redis) must agree on every rule (odeatts/limits.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from odeatts.config import Settings
from odeatts.connections import build_redis
from odeatts.limits import (
    Decision,
    InProcessLimiter,
    Limiter,
    Mark,
    RedisLimiter,
    UpstreamBudget,
    _decision,
)
from tests.support.services import require

Make = Callable[..., Limiter]


@pytest.fixture(params=["in-process", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    made: list[Limiter] = []

    def build(rpm: int = 0, tpm: int = 0, ttl: int = 60) -> Limiter:
        budget = UpstreamBudget(rpm=rpm, tpm=tpm)
        if request.param == "in-process":
            limiter: Limiter = InProcessLimiter(lease_ttl_seconds=ttl, upstream=budget)
        else:
            limiter = RedisLimiter(
                Redis.from_url(require("redis")),
                lease_ttl_seconds=ttl,
                upstream=budget,
                prefix=f"odeatts-test-{uuid.uuid4().hex[:8]}",
            )
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.aclose()


async def admit(limiter: Limiter, lease: str, **kw: Any) -> Any:
    args: dict[str, Any] = {"user_id": 1, "rpm": 100, "streams": 100, "chars": 10, **kw}
    return await limiter.admit(lease_id=lease, **args)


async def test_requests_per_minute_are_exact(make: Make) -> None:
    limiter = make()
    for n in range(3):
        assert (await admit(limiter, f"j{n}", rpm=3)).allowed
    refused = await admit(limiter, "j3", rpm=3)
    assert (refused.allowed, refused.reason) == (False, "rate")
    assert 0 < refused.retry_after <= 60
    other_user = await admit(limiter, "k0", rpm=3, user_id=2)
    assert other_user.allowed  # limits are per user


async def test_streams_are_leases_given_back_on_release(make: Make) -> None:
    limiter = make()
    assert (await admit(limiter, "a", streams=2)).allowed
    assert (await admit(limiter, "b", streams=2)).allowed
    refused = await admit(limiter, "c", streams=2)
    assert (refused.allowed, refused.reason) == (False, "concurrency")
    assert (await admit(limiter, "a", streams=2)).allowed  # a lease held is not a new stream
    await limiter.release(user_id=1, lease_id="a")
    await limiter.release(user_id=1, lease_id="a")  # idempotent
    assert (await admit(limiter, "c", streams=2)).allowed


async def test_our_minimax_account_limits_hold_across_users(make: Make) -> None:
    limiter = make(rpm=2)
    assert (await admit(limiter, "a", user_id=1)).allowed
    assert (await admit(limiter, "b", user_id=2)).allowed
    refused = await admit(limiter, "c", user_id=3)
    assert (refused.allowed, refused.reason) == (False, "upstream") and refused.retry_after > 0
    retry = await limiter.acquire_upstream(lease_id="a", chars=10)
    assert (retry.allowed, retry.reason) == (False, "upstream")


async def test_characters_per_minute_count_each_requests_text(make: Make) -> None:
    limiter = make(tpm=100)
    assert (await admit(limiter, "a", chars=60)).allowed
    refused = await admit(limiter, "b", chars=60)
    assert (refused.allowed, refused.reason) == (False, "upstream")
    assert (await admit(limiter, "c", chars=40)).allowed  # what fits, fits
    assert not (await limiter.acquire_upstream(lease_id="c", chars=1)).allowed


async def test_a_refusal_records_nothing(make: Make) -> None:
    limiter = make()
    assert (await admit(limiter, "a", streams=1, rpm=2)).allowed
    assert not (await admit(limiter, "b", streams=1, rpm=2)).allowed  # streams full
    await limiter.release(user_id=1, lease_id="a")
    assert (await admit(limiter, "b", streams=1, rpm=2)).allowed  # the refusal took no rpm


async def test_unadmit_gives_back_exactly_what_the_admission_took(make: Make) -> None:
    """As if never made: the user's request, the lease and our account's slot (the
    early admission a reservation did not confirm, pipeline.py)."""
    limiter = make(rpm=2)  # our MiniMax account: 2 requests a minute
    taken = await admit(limiter, "a", rpm=2, streams=1)
    assert taken.allowed and taken.stamp
    await limiter.unadmit(user_id=1, lease_id="a", chars=10, decision=taken)
    assert (await admit(limiter, "b", rpm=2, streams=1)).allowed  # the stream is free
    await limiter.release(user_id=1, lease_id="b")
    assert (await admit(limiter, "c", rpm=2, streams=1)).allowed  # a request, a slot
    await limiter.release(user_id=1, lease_id="c")
    refused = await admit(limiter, "d", rpm=2, streams=1)
    assert (refused.allowed, refused.reason) == (False, "rate")  # b and c count


@pytest.mark.parametrize(
    "reply",
    [
        [1, b"ok", 5, 0],  # the reply before the cache marker: not this script's
        [1, b"maybe", 5, 0, 0],
        [1, b"ok", "5", 0, 0],
        [1.0, b"ok", 5, 0, 0],
        [2, b"ok", 5, 0, 0],
        [1, b"ok", 5, 0, 3],
        [1, b"ok", 5, 0, True],
        [1, b"ok", 5, 0, b"1"],
        [1, b"ok", 5, 0, 0, 0],
        [1, b"ok", 5, 0, 0, b"1" * 33],
        [1, b"ok", 5, 0, 0, b"1", b"2"],
        None,
        b"OK",
    ],
)
def test_the_admission_scripts_reply_is_checked_at_the_boundary(reply: object) -> None:
    """What Redis answers is a decision only in the script's own shape; anything else is
    a Redis failure (the caller gets 503), never a decision made up from it."""
    ok = Decision(True, "ok", 5, 0)
    assert _decision([1, b"ok", 5, 0, 0]) == _decision([1, "ok", 5, 0, 0]) == ok
    assert _decision([1, b"ok", 5, 0, 1]) == Decision(True, "ok", 5, 0, cached=True, seen=True)
    assert _decision([1, b"ok", 5, 0, 2]) == Decision(True, "ok", 5, 0, seen=True)
    assert _decision([0, b"rate", 0, 1500, 0]) == Decision(False, "rate", 0, 1.5)
    stamped = _decision([1, b"ok", 5, 0, 0, b"1764633600123456"])
    assert stamped == Decision(True, "ok", 5, 0, stamp="1764633600123456")
    with pytest.raises(RedisError):
        _decision(reply)


async def test_a_marked_job_takes_no_upstream_slot_and_is_told_to_look(make: Make) -> None:
    """Redis: a marker that is there means "read the cache first", so the admission takes
    no slot of the MiniMax guard; one that is not there is a plain miss. In process every
    marker counts as there (the local directory is cheap to look in)."""
    limiter = make(rpm=1)
    marker = f"odeatts-test-{uuid.uuid4().hex[:8]}:cached:abc"
    in_process = isinstance(limiter, InProcessLimiter)
    unmarked = await admit(limiter, "a", marker=marker)
    assert (unmarked.allowed, unmarked.cached) == (True, in_process)
    if not in_process:  # the miss took the minute's one upstream slot; its release marks
        assert not (await admit(limiter, "b")).allowed
        await limiter.release(user_id=1, lease_id="a", mark=Mark(marker, 60_000, True))
    marked = await admit(limiter, "c", marker=marker)
    assert (marked.allowed, marked.cached) == (True, True)
    assert (await limiter.acquire_upstream(lease_id="c", chars=10)).allowed is in_process
    plain = await admit(limiter, "d")  # no marker given: an upstream slot, as before
    assert not plain.cached


async def test_a_slot_seen_once_is_seen_and_a_seen_mark_never_unmarks_a_written_one(
    make: Make,
) -> None:
    """``ODEATTS_CACHE_WRITE=repeat``: a miss's release marks its slot seen; the next
    admission says ``seen`` (Redis: not ``cached``, nothing was written, so no store
    read); a release that marks it written makes it ``cached``, and a later "seen" from
    a job that raced it never takes that back."""
    limiter = make()
    marker = f"odeatts-test-{uuid.uuid4().hex[:8]}:cached:seen"
    in_process = isinstance(limiter, InProcessLimiter)
    first = await admit(limiter, "a", marker=marker)
    assert (first.seen, first.cached) == (False, in_process)
    await limiter.release(user_id=1, lease_id="a", mark=Mark(marker, 60_000, False))
    second = await admit(limiter, "b", marker=marker)
    assert (second.seen, second.cached) == (True, in_process)
    await limiter.release(user_id=1, lease_id="b", mark=Mark(marker, 60_000, True))
    await limiter.release(user_id=1, lease_id="x", mark=Mark(marker, 60_000, False))
    third = await admit(limiter, "c", marker=marker)
    assert (third.seen, third.cached) == (True, True)
    if isinstance(limiter, RedisLimiter):
        redis = Redis.from_url(require("redis"))
        try:
            assert await redis.get(marker) == b"1"
        finally:
            await redis.delete(marker)
            await redis.aclose()


async def test_the_release_sets_the_mark_for_the_caches_ttl() -> None:
    redis = Redis.from_url(require("redis"))
    prefix = f"odeatts-test-{uuid.uuid4().hex[:8]}"
    limiter = RedisLimiter(
        redis, lease_ttl_seconds=60, upstream=UpstreamBudget(rpm=0, tpm=0), prefix=prefix
    )
    try:
        assert (await admit(limiter, "a", streams=1)).allowed
        await limiter.release(user_id=1, lease_id="a", mark=Mark(f"{prefix}:cached:x", 5_000, True))
        assert 0 < await redis.pttl(f"{prefix}:cached:x") <= 5_000
        assert (await admit(limiter, "b", streams=1)).allowed  # the lease was given back
    finally:
        await redis.delete(f"{prefix}:cached:x")
        await limiter.aclose()


async def test_a_burst_of_admissions_as_wide_as_the_workers_concurrency_gets_connections() -> None:
    """redis-py 8's pool refuses a call past its limit (100 unless told) instead of
    waiting: the worker's pool is sized by the jobs it runs at once."""
    settings = Settings(ODEATTS_ENV="test", REDIS_URL=require("redis"), ODEATTS_MAX_CONCURRENCY=80)
    redis = build_redis(settings)
    assert redis is not None
    limiter = RedisLimiter(
        redis,
        lease_ttl_seconds=60,
        upstream=UpstreamBudget(rpm=0, tpm=0),
        prefix=f"odeatts-test-{uuid.uuid4().hex[:8]}",
    )
    try:
        burst = [admit(limiter, f"j{n}", user_id=n) for n in range(2 * 80)]
        assert all(d.allowed for d in await asyncio.gather(*burst))
    finally:
        await limiter.aclose()
