"""Failed-authentication throttling (issue 16): repeated ``unauthorized`` answers for one
key prefix, or one malformed input, are throttled as ``rate_limited`` before the
database is asked, and a valid key costs no extra round trip (docs/security.md).

The rules on their own first (both limiters, real Redis), then through the worker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from odeatts.config import Settings
from odeatts.limits import InProcessLimiter, Limiter, RedisLimiter, UpstreamBudget
from odeatts.worker import Worker
from scripts.localrun import free_port
from tests.conftest import JobRunner, UserFactory
from tests.support.proxy import TcpProxy
from tests.support.services import require

LIMIT = 3
Make = Callable[..., Limiter]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["in-process", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    made: list[Limiter] = []
    prefix = f"odeatts-test-{uuid.uuid4().hex[:8]}"  # one Redis "fleet" per test

    def build(clock: Callable[[], float] | None = None) -> Limiter:
        kw: dict[str, Any] = {"lease_ttl_seconds": 60, "upstream": UpstreamBudget(0, 0)}
        kw["auth_failures"] = LIMIT
        if clock is not None:
            kw["clock"] = clock
        if request.param == "in-process":
            limiter: Limiter = InProcessLimiter(**kw)
        else:
            limiter = RedisLimiter(Redis.from_url(require("redis")), prefix=prefix, **kw)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.aclose()


async def test_the_threshold_throttles_the_subject_and_no_other(make: Make) -> None:
    limiter = make()
    for _ in range(LIMIT):
        assert limiter.auth_throttled("odea_AAAAAAAA") is None
        assert await limiter.auth_failed("odea_AAAAAAAA") is None  # still `unauthorized`
    retry = limiter.auth_throttled("odea_AAAAAAAA")
    assert retry is not None and 59 < retry <= 60
    assert limiter.auth_throttled("odea_BBBBBBBB") is None  # per prefix
    # An attempt already in flight when the block came is answered as throttled too.
    over = await limiter.auth_failed("odea_AAAAAAAA")
    assert over is not None and 0 < over <= 60


async def test_a_throttled_subject_is_free_again_when_its_failures_leave_the_window() -> None:
    clock = Clock()
    limiter = InProcessLimiter(
        lease_ttl_seconds=60, upstream=UpstreamBudget(0, 0), clock=clock, auth_failures=LIMIT
    )
    start = clock.now
    for step in range(LIMIT):  # at 0, 10 and 20 s
        clock.now = start + 10 * step
        await limiter.auth_failed("s")
    assert limiter.auth_throttled("s") == pytest.approx(40.0)  # until the first is 60 s old
    clock.now = start + 60
    assert limiter.auth_throttled("s") is None
    assert await limiter.auth_failed("s") is None  # with the two still in the window: three
    assert limiter.auth_throttled("s") == pytest.approx(10.0)  # until the one at 10 s leaves


async def test_failures_count_across_the_fleet() -> None:
    """Two workers (two limiters, one Redis): the failures of both add up."""
    prefix = f"odeatts-test-{uuid.uuid4().hex[:8]}"
    first, second = (
        RedisLimiter(
            Redis.from_url(require("redis")),
            lease_ttl_seconds=60,
            upstream=UpstreamBudget(0, 0),
            prefix=prefix,
            auth_failures=LIMIT,
        )
        for _ in range(2)
    )
    try:
        for limiter in (first, second, first):
            assert await limiter.auth_failed("odea_CCCCCCCC") is None
        assert first.auth_throttled("odea_CCCCCCCC") is not None  # it saw the threshold
        assert second.auth_throttled("odea_CCCCCCCC") is None  # it has not been told yet
        over = await second.auth_failed("odea_CCCCCCCC")  # ...and learns it from Redis
        assert over is not None and second.auth_throttled("odea_CCCCCCCC") is not None
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_redis_count_keeps_only_what_decides() -> None:
    redis = Redis.from_url(require("redis"))
    prefix = f"odeatts-test-{uuid.uuid4().hex[:8]}"
    limiter = RedisLimiter(
        redis, lease_ttl_seconds=60, upstream=UpstreamBudget(0, 0), prefix=prefix, auth_failures=2
    )
    try:
        for _ in range(5):
            await limiter.auth_failed("odea_DDDDDDDD")
        key = f"{prefix}:authfail:odea_DDDDDDDD"
        assert await redis.zcard(key) == 2  # a guesser cannot grow it
        assert 0 < await redis.pttl(key) <= 60_000
    finally:
        await limiter.aclose()


# ------------------------------------------------------------------ through the worker


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(ODEATTS_AUTH_FAILURES_PER_MINUTE=LIMIT)


def guess(n: int, prefix: str = "AAAAAAAA") -> str:
    return f"odea_{prefix}_{n:032d}"


def code(out: dict[str, Any]) -> str:
    return str(out["error"]["code"]) if "error" in out else "ok"


async def speak(run_job: JobRunner, key: str) -> dict[str, Any]:
    return await run_job(api_key=key, text="Hello.", voice="british-male")


async def test_guessing_one_prefix_is_throttled_on_every_action(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user()
    prefix = key[5:13]
    codes = [code(await speak(run_job, guess(n, prefix))) for n in range(LIMIT)]
    assert codes == ["unauthorized"] * LIMIT
    throttled = await speak(run_job, guess(99, prefix))
    assert throttled["error"]["code"] == "rate_limited" and throttled["error"]["status"] == 429
    assert 0 < throttled["error"]["retry_after"] <= 60
    for action in ("usage", "voices"):
        assert code(await run_job(api_key=guess(1, prefix), action=action)) == "rate_limited"
    # The real key under that prefix gets the same answer: nothing tells it apart.
    real = await speak(run_job, key)
    assert real["error"] == throttled["error"] | {"retry_after": real["error"]["retry_after"]}
    assert code(await speak(run_job, guess(1, "BBBBBBBB"))) == "unauthorized"  # per prefix


async def test_a_repeated_malformed_key_is_throttled_and_another_is_not(
    run_job: JobRunner,
) -> None:
    for _ in range(LIMIT):
        assert code(await run_job(api_key="not-a-key", action="usage")) == "unauthorized"
    assert code(await run_job(api_key="not-a-key", action="usage")) == "rate_limited"
    assert code(await run_job(api_key="not-a-key-either", action="usage")) == "unauthorized"


async def test_a_valid_key_counts_no_failure(run_job: JobRunner, make_user: UserFactory) -> None:
    _, key = await make_user()
    for _ in range(LIMIT + 1):
        assert code(await run_job(api_key=key, action="usage")) == "ok"


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_a_throttled_guess_costs_neither_postgres_nor_redis(
    make_settings: Callable[..., Settings], pg_proxy: TcpProxy, redis_proxy: TcpProxy
) -> None:
    worker = Worker(
        make_settings(
            DATABASE_URL=pg_proxy.url,
            REDIS_URL=redis_proxy.url,
            ODEATTS_AUTH_FAILURES_PER_MINUTE=LIMIT,
        )
    )

    async def trips(key: str) -> tuple[str, int, int]:
        pg, redis = pg_proxy.round_trips, redis_proxy.round_trips
        job = {"id": f"g-{uuid.uuid4()}", "input": {"api_key": key, "action": "usage"}}
        error = json.loads((await worker.handle(job))["error"])
        return error["code"], pg_proxy.round_trips - pg, redis_proxy.round_trips - redis

    try:
        await trips(guess(0, "WARMWARM"))  # opens the connections
        failures = [await trips(guess(n)) for n in range(LIMIT)]
        # Each one lookup on Postgres (its transaction's round trips) and one count on Redis.
        assert [(c, redis) for c, _, redis in failures] == [("unauthorized", 1)] * LIMIT
        assert len({pg for _, pg, _ in failures}) == 1 and failures[0][1] > 0
        assert await trips(guess(LIMIT)) == ("rate_limited", 0, 0)
    finally:
        await worker.aclose()


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_with_redis_away_a_wrong_key_is_still_unauthorized_then_throttled_here(
    make_settings: Callable[..., Settings],
) -> None:
    """Fail open, to the worker's own count: the caller hears the truth about the key
    (never service_unavailable for it), and this worker still throttles the guesser."""
    worker = Worker(
        make_settings(
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            ODEATTS_AUTH_FAILURES_PER_MINUTE=LIMIT,
        )
    )
    try:
        jobs = [
            {"id": f"r-{n}", "input": {"api_key": guess(n), "action": "usage"}} for n in range(4)
        ]
        codes = [json.loads((await worker.handle(job))["error"])["code"] for job in jobs]
        assert codes == ["unauthorized"] * LIMIT + ["rate_limited"]
    finally:
        await worker.aclose()


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_with_redis_s_breaker_open_failures_are_still_counted_here(
    make_settings: Callable[..., Settings],
) -> None:
    """Redis down long enough for its breaker to open before the threshold (the
    defaults: 5 against 10): the calls refused by the breaker count here too."""
    worker = Worker(
        make_settings(
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            ODEATTS_AUTH_FAILURES_PER_MINUTE=LIMIT,
            ODEATTS_BREAKER_THRESHOLD=1,
            ODEATTS_BREAKER_COOLDOWN_SECONDS=300,
        )
    )
    try:
        jobs = [
            {"id": f"b-{n}", "input": {"api_key": guess(n), "action": "usage"}}
            for n in range(LIMIT + 1)
        ]
        codes = [json.loads((await worker.handle(job))["error"])["code"] for job in jobs]
        assert codes == ["unauthorized"] * LIMIT + ["rate_limited"]
    finally:
        await worker.aclose()


def test_the_threshold_is_a_setting_with_a_sensible_default() -> None:
    assert Settings(ODEATTS_ENV="test").auth_failures_per_minute == 10
    assert Settings(ODEATTS_AUTH_FAILURES_PER_MINUTE="25").auth_failures_per_minute == 25
    with pytest.raises(ValueError):
        Settings(ODEATTS_AUTH_FAILURES_PER_MINUTE="0")
