"""Postgres and Redis that misbehave, behind TCP proxies the tests control (issue 8).

Each test reproduces one failure seen in the field: a Redis frozen during admission,
a Postgres gone silent (no reset, no FIN), a Postgres cut between synthesis and settle,
and the log flood of an outage. The worker under test reaches both services through
the proxies; the checks read the ledger directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import select

import minimax_emulator.t2a
from minimax_emulator import Emulator
from odeatts import accounts, metering
from odeatts.config import Settings
from odeatts.keys import hash_key
from odeatts.limits import RedisLimiter, UpstreamBudget
from odeatts.models import Usage, User
from odeatts.outbox import Charge, RedisOutbox
from odeatts.worker import Worker
from tests.conftest import S3_BUCKET, UserFactory
from tests.support.cli import Invoke, cli_env
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)


@pytest.fixture
def redis(redis_url: str) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(redis_url)
    yield client
    client.close()


FAST_FAILURE = {
    "ODEATTS_DB_TIMEOUT_SECONDS": 1,
    "ODEATTS_REDIS_TIMEOUT_SECONDS": 0.5,
    "ODEATTS_SETTLE_RETRY_SECONDS": 0.5,
    "ODEATTS_BREAKER_COOLDOWN_SECONDS": 0.3,
}


@pytest.fixture
async def make_faulty(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Worker]]:
    """Workers with short deadlines, built from the test's own settings."""
    made: list[Worker] = []

    def make(**overrides: Any) -> Worker:
        made.append(Worker(make_settings(**{**FAST_FAILURE, **overrides})))
        return made[-1]

    yield make
    for worker in made:
        await worker.aclose()


@pytest.fixture
def faulty(make_faulty: Callable[..., Worker], pg_proxy: TcpProxy, redis_proxy: TcpProxy) -> Worker:
    """A worker that reaches Postgres and Redis only through the proxies."""
    return make_faulty(DATABASE_URL=pg_proxy.url, REDIS_URL=redis_proxy.url)


async def speak(
    worker: Worker, key: str, job_id: str | None = None, **options: Any
) -> dict[str, Any]:
    result = await worker.handle(
        {
            "id": job_id or f"job-{uuid.uuid4().hex[:12]}",
            "input": {
                "api_key": key,
                "text": "The world misbehaves.",
                "voice": "british-male",
                **options,
            },
        }
    )
    return {"error": json.loads(result["error"])} if "error" in result else result


def code(out: dict[str, Any]) -> str | None:
    return out["error"]["code"] if "error" in out else None


async def until(
    condition: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if await result if isinstance(result, Awaitable) else result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def ledger(worker: Worker, user_id: int) -> tuple[int, dict[str, Usage]]:
    async with worker.pipeline().sessions() as session:
        used = (await session.execute(select(User.used_ms).where(User.id == user_id))).scalar_one()
        rows = (
            (await session.execute(select(Usage).where(Usage.user_id == user_id))).scalars().all()
        )
    return used, {r.job_id: r for r in rows}


# ------------------------------------------------------------------------- defect 1
async def test_an_admission_lost_in_a_frozen_redis_never_holds_the_lease(
    faulty: Worker,
    make_user: UserFactory,
    redis_proxy: TcpProxy,
    redis: SyncRedis,
    settings: Settings,
) -> None:
    user_id, key = await make_user()  # free plan: one stream
    assert code(await speak(faulty, key)) is None
    redis_proxy.set("stall")  # Redis frozen: the admission script waits in the pipe
    started = time.monotonic()
    out = await speak(faulty, key, job_id="frozen")
    assert code(out) == "service_unavailable"
    assert time.monotonic() - started < 5
    redis_proxy.resume()  # Redis wakes and runs the queued admission

    prefix = settings.redis_prefix
    await until(
        lambda: (
            bool(redis.exists(f"{prefix}:void:frozen#1"))
            and redis.zcard(f"{prefix}:leases:{user_id}") == 0
        ),
        "the lost admission to be voided",
    )
    assert code(await speak(faulty, key)) is None  # not refused for the lease TTL


async def test_an_early_admission_lost_in_a_frozen_redis_for_a_refused_job_holds_nothing(
    faulty: Worker,
    make_user: UserFactory,
    redis_proxy: TcpProxy,
    redis: SyncRedis,
    settings: Settings,
) -> None:
    """The key is known, so its admission goes out beside the reservation; Redis is
    frozen and the reservation refuses (the key was revoked). The caller hears
    ``unauthorized`` within seconds, and the admission, whenever Redis runs it, takes
    neither the stream nor a request."""
    user_id, key = await make_user("free", rpm_override=2)  # one stream
    assert code(await speak(faulty, key)) is None
    sessions = faulty.pipeline().sessions
    await accounts.revoke_key(sessions, prefix=key)
    redis_proxy.set("stall")
    started = time.monotonic()
    assert code(await speak(faulty, key, job_id="revoked")) == "unauthorized"
    assert time.monotonic() - started < 5
    redis_proxy.resume()
    await faulty.pipeline().admissions_undone()
    prefix = settings.redis_prefix
    assert redis.exists(f"{prefix}:void:revoked#1")
    assert redis.zcard(f"{prefix}:leases:{user_id}") == 0
    other = await accounts.issue_key(sessions, user=str(user_id), pepper=settings.pepper)
    assert code(await speak(faulty, other.plain)) is None  # the stream, and a request, left
    assert code(await speak(faulty, other.plain)) == "rate_limited"  # 2 of 2


@pytest.fixture
async def limiter(redis_url: str) -> AsyncIterator[RedisLimiter]:
    """A limiter alone on real Redis; our MiniMax account allows one request a minute."""
    made = RedisLimiter(
        AsyncRedis.from_url(redis_url),
        lease_ttl_seconds=30,
        upstream=UpstreamBudget(rpm=1, tpm=0),
        prefix=f"odeatts-test-{uuid.uuid4().hex[:8]}",
    )
    yield made
    await made.aclose()


async def test_a_voided_admission_never_takes_its_lease_whenever_it_runs(
    limiter: RedisLimiter,
) -> None:
    await limiter.release(user_id=1, lease_id="late#1", void=True)  # the void first
    late = await limiter.admit(user_id=1, lease_id="late#1", rpm=10, streams=1, chars=5)
    assert (late.allowed, late.reason) == (False, "void")
    nxt = await limiter.admit(user_id=1, lease_id="late#2", rpm=10, streams=1, chars=5)
    assert nxt.allowed  # the lost admission took no stream, nor our account's slot


async def test_an_admission_voided_after_it_ran_counts_nothing(limiter: RedisLimiter) -> None:
    """Redis ran the admission before the void reached it: the void takes back its
    lease, its request and our account's slot."""
    ran = await limiter.admit(user_id=1, lease_id="gone#1", rpm=1, streams=1, chars=5)
    assert ran.allowed
    await limiter.release(user_id=1, lease_id="gone#1", void=True)
    nxt = await limiter.admit(user_id=1, lease_id="next#1", rpm=1, streams=1, chars=5)
    assert nxt.allowed  # the stream, the user's one request and the account's one slot


# --------------------------------------------------------------------- defects 2, 8
async def test_a_silent_postgres_is_answered_within_seconds_and_logged_once(
    faulty: Worker,
    make_user: UserFactory,
    pg_proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
    redis: SyncRedis,
    settings: Settings,
) -> None:
    user_id, key = await make_user("pro")
    assert code(await speak(faulty, key)) is None
    caplog.set_level(logging.INFO)
    caplog.clear()
    pg_proxy.set("silence")  # no reset, no FIN: bytes vanish

    started = time.monotonic()
    outs = await asyncio.gather(*(speak(faulty, key) for _ in range(8)))
    assert [code(o) for o in outs] == ["service_unavailable"] * 8
    assert time.monotonic() - started < 5  # deadline 1 s; the jobs wait side by side
    fast = time.monotonic()
    assert code(await speak(faulty, key)) == "service_unavailable"
    assert time.monotonic() - fast < 0.5  # the breaker is open: no waiting at all
    # The key was known: the first jobs' admissions went out beside their reservations,
    # and were undone when those failed. Only the first job holds a request; no lease.
    await faulty.pipeline().admissions_undone()
    prefix = settings.redis_prefix
    assert redis.zcard(f"{prefix}:leases:{user_id}") == 0
    assert redis.zcard(f"{prefix}:rpm:{user_id}") == 1

    pg_proxy.resume()

    async def served() -> bool:
        return code(await speak(faulty, key)) is None

    await until(served, "a job to succeed after Postgres came back")
    ours = [r for r in caplog.records if r.name.startswith("odeatts")]
    assert not [r for r in ours if r.exc_info], "a traceback was logged per job"
    down = [r for r in ours if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in down] == ["postgres is down"]
    assert len([r for r in ours if "postgres recovered" in r.getMessage()]) == 1
    assert len(ours) < 40, [r.getMessage() for r in ours]


async def test_a_silent_postgres_at_warm_up_holds_the_first_job_only_seconds(
    faulty: Worker, make_user: UserFactory, pg_proxy: TcpProxy
) -> None:
    """A new worker warms up before its first job, and the job waits for it: with
    Postgres silent from the start, the warm-up gives up at its deadline and the job
    gets its clean error within seconds, not after a minute of waiting."""
    _, key = await make_user("pro")
    await faulty.aclose()  # a new process: nothing open
    pg_proxy.set("silence")
    faulty.concurrency(1)  # the SDK's first call on its job loop starts the warm-up
    started = time.monotonic()
    assert code(await speak(faulty, key)) == "service_unavailable"
    assert time.monotonic() - started < 5  # deadline 1 s for the warm-up, 1 s for the job


# ------------------------------------------------------------------------- defect 9
async def test_audio_made_before_postgres_dropped_is_delivered_and_charged_once(
    faulty: Worker,
    worker: Worker,
    make_user: UserFactory,
    pg_proxy: TcpProxy,
    emu: Emulator,
    redis: SyncRedis,
    settings: Settings,
) -> None:
    user_id, key = await make_user("pro")  # five streams
    assert code(await speak(faulty, key, job_id="before")) is None
    emu.configure(latency_seconds=0.5)
    jobs = [asyncio.create_task(speak(faulty, key, job_id=f"cut-{i}")) for i in range(4)]
    await until(lambda: emu.stats()["in_flight"] == 4, "four syntheses in flight")
    pg_proxy.set("refuse")
    pg_proxy.cut()  # between reservation and settle
    outs = await asyncio.gather(*jobs)
    assert [code(o) for o in outs] == [None] * 4, outs  # the audio reached the callers

    pg_proxy.resume()
    await until(
        lambda: redis.hlen(f"{settings.redis_prefix}:outbox") == 0,
        "the worker to apply its kept charges",
    )
    used, rows = await ledger(worker, user_id)
    delivered = {f"cut-{i}": round(o["duration_seconds"] * 1000) for i, o in enumerate(outs)}
    for job_id, ms in delivered.items():
        assert (rows[job_id].status, rows[job_id].duration_ms) == ("succeeded", ms)
    assert used == rows["before"].duration_ms + sum(delivered.values())


async def test_with_postgres_and_redis_both_gone_a_job_is_an_error_charged_nothing(
    faulty: Worker,
    worker: Worker,
    make_user: UserFactory,
    pg_proxy: TcpProxy,
    redis_proxy: TcpProxy,
    emu: Emulator,
) -> None:
    user_id, key = await make_user("pro")
    assert code(await speak(faulty, key, job_id="before")) is None
    emu.configure(latency_seconds=0.5)
    job = asyncio.create_task(speak(faulty, key, job_id="lost"))
    await until(lambda: emu.stats()["in_flight"] == 1, "the synthesis in flight")
    for proxy in (pg_proxy, redis_proxy):
        proxy.set("refuse")
        proxy.cut()
    assert code(await job) == "service_unavailable"  # no audio without a record of it
    for proxy in (pg_proxy, redis_proxy):
        proxy.resume()
    used, rows = await ledger(worker, user_id)
    assert used == rows["before"].duration_ms
    assert rows["lost"].status == "reserved" and rows["lost"].duration_ms is None


async def test_the_hourly_job_applies_kept_charges_exactly_once(
    worker: Worker,
    make_user: UserFactory,
    invoke: Invoke,
    settings: Settings,
    redis_url: str,
) -> None:
    user_id, key = await make_user("pro")
    now = dt.datetime.now(dt.UTC)
    reservation = await metering.reserve(
        worker.pipeline().sessions,
        key_hash=hash_key(key, settings.pepper),
        now=now,
        stale_after=dt.timedelta(seconds=330),
        job=metering.JobMeta(
            job_id="kept",
            voice="british-male",
            model="speech-02-turbo",
            text_chars=20,
            estimated_ms=2000,
        ),
    )
    owed = Charge(
        job_id="kept",
        usage_id=reservation.usage_id,
        attempt=reservation.attempt,
        user_id=user_id,
        duration_ms=1234,
        billed_characters=20,
        trace_id="t",
        settled_at=now.isoformat(),
    )
    env = {
        **cli_env(settings),
        "REDIS_URL": redis_url,
        "ODEATTS_REDIS_PREFIX": settings.redis_prefix,
    }

    settled = []
    for _ in range(2):  # the same charge kept twice (two workers, a retry): applied once
        client = AsyncRedis.from_url(redis_url)
        await RedisOutbox(client, prefix=settings.redis_prefix).put(owed)
        await client.aclose()
        result = await asyncio.to_thread(invoke, "quota", "reset-due", "--json", env=env)
        assert result.exit_code == 0, result.output
        settled.append(json.loads(result.output)["outbox_settled"])

    assert settled == [1, 0]
    used, rows = await ledger(worker, user_id)
    assert (used, rows["kept"].status, rows["kept"].duration_ms) == (1234, "succeeded", 1234)


# --------------------------------------------------------------- MiniMax and storage
async def test_a_silent_minimax_is_upstream_unavailable_within_seconds(
    make_faulty: Callable[..., Worker],
    worker: Worker,
    make_user: UserFactory,
    emu: Emulator,
) -> None:
    user_id, key = await make_user()
    with TcpProxy(emu.url, 80) as proxy:
        faulty = make_faulty(
            MINIMAX_BASE_URL=proxy.url, MINIMAX_TIMEOUT_SECONDS=1, MINIMAX_MAX_RETRIES=1
        )
        assert code(await speak(faulty, key)) is None
        proxy.set("silence")
        started = time.monotonic()
        assert code(await speak(faulty, key, job_id="unheard")) == "upstream_unavailable"
        assert time.monotonic() - started < 5  # two attempts of 1 s, and a backoff
        proxy.resume()
        assert code(await speak(faulty, key)) is None
    used, rows = await ledger(worker, user_id)
    assert (rows["unheard"].status, rows["unheard"].duration_ms) == ("failed", None)
    assert used == sum(r.duration_ms or 0 for r in rows.values())


async def test_a_silent_subtitle_host_is_upstream_unavailable_within_seconds(
    make_faulty: Callable[..., Worker],
    worker: Worker,
    make_user: UserFactory,
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MiniMax answers, but the host of the subtitle file it names never does: the
    fetch's own deadline ends the job, which is charged nothing."""
    user_id, key = await make_user()
    with TcpProxy(emu.url, 80) as files:  # on MiniMax's host, as MiniMax's files are
        files.set("silence")
        monkeypatch.setattr(
            minimax_emulator.t2a,
            "hosted_url",
            lambda _request, token: f"{files.url}/_emulator/files/{token}",
        )
        faulty = make_faulty()
        assert code(await speak(faulty, key)) is None  # builds the pipeline
        faulty.pipeline().deps.subtitles.timeout = 1.0  # 10 s in production
        started = time.monotonic()
        out = await speak(faulty, key, job_id="no-timings", timestamps=True)
        assert code(out) == "upstream_unavailable"
        assert time.monotonic() - started < 5
    used, rows = await ledger(worker, user_id)
    assert (rows["no-timings"].status, rows["no-timings"].duration_ms) == ("failed", None)
    assert used == sum(r.duration_ms or 0 for r in rows.values())


async def test_a_stalled_object_storage_is_service_unavailable_within_seconds(
    make_faulty: Callable[..., Worker],
    worker: Worker,
    make_user: UserFactory,
    s3_url: str,
) -> None:
    user_id, key = await make_user()
    with TcpProxy(s3_url, 80) as proxy:
        faulty = make_faulty(
            BUCKET_ENDPOINT_URL=proxy.url,
            BUCKET_NAME=S3_BUCKET,
            BUCKET_ACCESS_KEY_ID="test",
            BUCKET_SECRET_ACCESS_KEY="test",
            ODEATTS_STORAGE_TIMEOUT_SECONDS=1,
        )
        assert "audio_url" in await speak(faulty, key, output="url")
        proxy.set("stall")
        started = time.monotonic()
        out = await speak(faulty, key, job_id="unstored", output="url")
        assert code(out) == "service_unavailable"
        assert time.monotonic() - started < 5
        proxy.resume()
    used, rows = await ledger(worker, user_id)
    assert (rows["unstored"].status, rows["unstored"].duration_ms) == ("failed", None)
    assert used == sum(r.duration_ms or 0 for r in rows.values())


async def test_the_hourly_job_with_redis_down_says_so_in_one_line(
    invoke: Invoke, settings: Settings
) -> None:
    env = {**cli_env(settings), "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = await asyncio.to_thread(invoke, "quota", "reset-due", env=env)
    assert result.exit_code == 3, result.output
    assert result.output.startswith("error: service_unavailable") and "Traceback" not in (
        result.output
    )
