"""The job path at the floor: Postgres one round trip to reserve and one to settle (or
release), Redis one to admit and one to release the lease (issue 11).

Counted on the wire, not in our code: the worker reaches real Postgres and real Redis
only through TCP proxies (tests/support/proxy.py) that count round trips, the times a
client speaks after hearing from the server. Whatever adds one, whether a query of ours,
a BEGIN/COMMIT, a pool's reset-on-return ROLLBACK, a pre-ping or a driver's separate
prepare, shows here.

Warm-up is excluded by running warm-up jobs first, of each kind measured: they open
the pool connections (startup, SQLAlchemy's first-connect queries, Redis HELLO and
SCRIPT LOAD after NOSCRIPT), load the voice catalogue into the worker's cache (reloaded
every 60 s, so never within the test) and prepare our statements server-side (psycopg's
``prepare=True`` costs one extra round trip per connection the first time). The
measured jobs then run on warm connections, as nearly every job in production does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from minimax_emulator import Emulator
from odeatts.config import Settings
from odeatts.worker import Worker
from tests.conftest import UserFactory
from tests.support.cache import count_reads
from tests.support.cli import Invoke
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)

# content_rejected: MiniMax refuses once, never retried; the job fails after admission.
REJECTED = {"endpoint": "t2a_v2", "kind": "base_resp", "code": 1026}


@pytest.fixture
async def proxied(
    make_settings: Callable[..., Settings], pg_proxy: TcpProxy, redis_proxy: TcpProxy
) -> AsyncIterator[Worker]:
    """A worker that reaches Postgres and Redis only through the counting proxies."""
    worker = Worker(make_settings(DATABASE_URL=pg_proxy.url, REDIS_URL=redis_proxy.url))
    yield worker
    await worker.aclose()


class Wire:
    def __init__(self, worker: Worker, pg: TcpProxy, redis: TcpProxy) -> None:
        self.worker, self.pg, self.redis = worker, pg, redis

    async def job(self, key: str, **options: Any) -> tuple[dict[str, Any], int, int]:
        """Run one speech job; its reply and the Postgres and Redis round trips it took."""
        pg, redis = self.pg.round_trips, self.redis.round_trips
        out = await self.worker.handle(
            {
                "id": f"trips-{uuid.uuid4()}",
                "input": {"api_key": key, "text": "Count my trips.", "voice": "british-male"}
                | options,
            }
        )
        return out, self.pg.round_trips - pg, self.redis.round_trips - redis


@pytest.fixture
def wire(proxied: Worker, pg_proxy: TcpProxy, redis_proxy: TcpProxy) -> Wire:
    return Wire(proxied, pg_proxy, redis_proxy)


async def test_a_successful_job_is_two_postgres_and_two_redis_round_trips(
    wire: Wire, make_user: UserFactory
) -> None:
    _, key = await make_user("pro")
    for _ in range(2):  # warm-up, then the one that counts
        out, pg, redis = await wire.job(key)
    assert "error" not in out, out
    assert (pg, redis) == (2, 2)  # reserve, settle; EVALSHA (admit), ZREM (lease)


async def test_a_failed_synthesis_is_two_and_two(
    wire: Wire, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user("pro")
    for _ in range(2):
        emu.add_fault(REJECTED)
        out, pg, redis = await wire.job(key)
    assert "content_rejected" in out["error"], out
    assert (pg, redis) == (2, 2)  # reserve, release; EVALSHA, ZREM


async def test_a_job_over_quota_is_one_postgres_round_trip_and_no_redis(
    wire: Wire, make_user: UserFactory
) -> None:
    _, key = await make_user("free", used_ms=600_000)
    for _ in range(2):
        out, pg, redis = await wire.job(key)
    assert "quota_exceeded" in out["error"], out
    assert (pg, redis) == (1, 0)  # the reservation records the refusal itself


async def test_the_floor_holds_for_jobs_in_a_row(wire: Wire, make_user: UserFactory) -> None:
    """psycopg prepares a statement once per connection: the fifth job costs no more."""
    _, key = await make_user("pro")
    await wire.job(key)
    trips = [(await wire.job(key))[1:] for _ in range(6)]
    assert trips == [(2, 2)] * 6


async def test_after_a_warm_up_the_first_jobs_are_at_the_floor_too(
    wire: Wire, make_user: UserFactory
) -> None:
    """A cold worker's warm-up opens the Postgres pool's connections and prepares the
    job path's statements on each: the first jobs, which the pool hands a different
    connection each (oldest first), pay no prepare round trip of their own; nor do
    the jobs after the voice catalogue's periodic reload (a read that commits: psycopg
    forgets its prepared statements at a ROLLBACK)."""
    _, key = await make_user("pro")
    pipeline = wire.worker.pipeline()
    await pipeline.warm_up()
    jobs = wire.worker.settings.db_pool_size + 1
    trips = [(await wire.job(key))[1:] for _ in range(jobs)]
    await pipeline.voices.reload()
    trips += [(await wire.job(key))[1:] for _ in range(jobs)]
    assert trips == [(2, 2)] * jobs * 2


async def test_a_job_refused_at_redis_is_two_postgres_and_one_redis_round_trip(
    wire: Wire, make_user: UserFactory
) -> None:
    _, key = await make_user("pro", rpm_override=1)
    assert "error" not in (await wire.job(key))[0]  # takes the minute's one request
    for _ in range(2):  # the first refusal also prepares the release
        out, pg, redis = await wire.job(key)
    assert "rate_limited" in out["error"], out
    assert (pg, redis) == (2, 1)  # reserve, release; EVALSHA (refused, nothing to release)


async def test_a_job_in_the_users_default_voice_is_two_and_two(
    wire: Wire, make_user: UserFactory
) -> None:
    """The reservation returns the default voice; the voice itself comes from the cache."""
    _, key = await make_user("pro", default_voice="british-female")
    # Warm-up: the first job loads the voice catalogue between reserve and settle, so
    # the second may still prepare a statement on another pooled connection.
    for _ in range(3):
        out, pg, redis = await wire.job(key, voice=None)
    assert out.get("voice") == "british-female", out
    assert (pg, redis) == (2, 2)


async def test_saved_pronunciations_cost_no_round_trip(
    wire: Wire, make_user: UserFactory, emu: Emulator, invoke: Invoke
) -> None:
    """The user's dictionary comes back with the reservation, the voice's with the
    cached catalogue (the warm-up job loads it), so a job with both is still 2 and 2."""
    user_id, key = await make_user("pro")
    for owner in (["--user", str(user_id)], ["--voice", "british-male"]):
        done = await asyncio.to_thread(
            invoke, "pronunciations", "set", *owner, "--entry", f"trips={owner[0]}"
        )
        assert done.exit_code == 0, done.stderr
    for _ in range(2):
        out, pg, redis = await wire.job(key)
    assert "error" not in out, out
    assert (pg, redis) == (2, 2)
    assert set(emu.stats()["tones"][-1]) == {"trips/--user"}  # the user's wins


async def test_a_cache_miss_and_a_hit_are_two_and_two_too(
    make_settings: Callable[..., Settings],
    pg_proxy: TcpProxy,
    redis_proxy: TcpProxy,
    make_user: UserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The audio cache is no round trip of Postgres or Redis. A miss (a new text) reads
    nothing from the store either: the admission found no marker of its slot, and the
    release sets one. A hit reserves, is admitted (the marker found), reads the store
    once, settles (odeatts_settle3 records ``cached``) and gives its lease back."""
    settings = make_settings(
        DATABASE_URL=pg_proxy.url, REDIS_URL=redis_proxy.url, ODEATTS_CACHE=True
    )
    worker = Worker(settings)
    wire = Wire(worker, pg_proxy, redis_proxy)
    try:
        _, key = await make_user("pro")
        reads = count_reads(worker.pipeline().cache, monkeypatch)
        for n in range(2):  # new texts; the first warms up
            miss, pg, redis = await wire.job(key, text=f"Count my trips, {n}.")
        await worker.pipeline().cache_writes()
        assert "cached" not in miss and (pg, redis) == (2, 2) and reads == []
        for _ in range(2):  # the first hit also prepares the settle
            out, pg, redis = await wire.job(key, text="Count my trips, 0.")
    finally:
        await worker.aclose()
    assert out.get("cached") is True, out
    assert (pg, redis) == (2, 2) and len(reads) == 2
