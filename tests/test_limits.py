"""The admission rules on their own, with no worker: the in-process limiter and the
Redis script (real Redis) must agree on every rule (odeatts/limits.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from odeatts.limits import (
    Decision,
    InProcessLimiter,
    Limiter,
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


@pytest.mark.parametrize(
    "reply",
    [[1, b"ok", 5], [1, b"maybe", 5, 0], [1, b"ok", "5", 0], [1.0, b"ok", 5, 0], None, b"OK"],
)
def test_the_admission_scripts_reply_is_checked_at_the_boundary(reply: object) -> None:
    """What Redis answers is a decision only in the script's own shape; anything else is
    a Redis failure (the caller gets 503), never a decision made up from it."""
    assert _decision([1, b"ok", 5, 0]) == _decision([1, "ok", 5, 0]) == Decision(True, "ok", 5, 0)
    assert _decision([0, b"rate", 0, 1500]) == Decision(False, "rate", 0, 1.5)
    with pytest.raises(RedisError):
        _decision(reply)
