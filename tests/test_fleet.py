"""Metering across a fleet: several ``python handler.py`` processes in RunPod's
production loop (fed by tests/support/fake_runpod.py), one Postgres, one Redis, the
MiniMax emulator. Quota, RPM, streams, re-delivery, a SIGKILLed worker and our
MiniMax account's own RPM, checked from the database, Redis and the emulator's side.
(One worker in-process is tests/test_metering.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import UserFactory
from tests.support.fake_runpod import FakeRunPod, Fleet, Result, WorkerProcess, worker_env

# One fleet at a time: each starts up to four worker processes, and the tests' margins
# assume that those, not another fleet, share the machine (scripts/test: --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fleet")]

THROTTLES = {"rate_limited", "concurrency_limited", "upstream_busy"}
DOCUMENTED = {"quota_exceeded", *THROTTLES}
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "brass",
    "bands",
    "play",
    "loud",
    "music",
    "near",
    "old",
    "river",
    "bridge",
    "at",
]


@pytest.fixture
def backend() -> str:
    """Fleet tests mean Postgres + Redis (skipped without them, failed under CI)."""
    return "real"


@pytest.fixture
def fake() -> Iterator[FakeRunPod]:
    with FakeRunPod() as server:
        yield server


@pytest.fixture
def fleet(fake: FakeRunPod, tmp_path: Path) -> Iterator[Fleet]:
    """Worker processes; killed (SIGKILL, whole process group) whatever the test did."""
    with Fleet(fake, tmp_path) as workers:
        yield workers


def fleet_env(settings: Settings, **overrides: object) -> dict[str, str]:
    return {
        **worker_env(settings),
        "ODEATTS_LOG_LEVEL": "INFO",
        # These tests check limits, not deadlines (tests/test_failure_modes.py does): up
        # to 80 jobs of one user queue on that user's row lock, in processes that share
        # two cores with the rest of the suite, and a 3 s deadline missed there would
        # turn a limit test into a flaky test of this machine's load.
        "ODEATTS_DB_TIMEOUT_SECONDS": "15",
        **{k: str(v) for k, v in overrides.items()},
    }


async def start(
    fleet: Fleet, count: int, env: dict[str, str], *, name: str = "w"
) -> list[WorkerProcess]:
    """Spawn from this (the main) thread, wait in another: see Fleet."""
    workers = fleet.spawn(count, env, name=name)
    await asyncio.to_thread(fleet.wait_ready, workers)
    return workers


async def wait_results(fake: FakeRunPod, n: int, timeout: float) -> list[Result]:
    return await asyncio.to_thread(fake.wait_for, n, timeout)


async def until_in_flight(emu: Emulator, fleet: Fleet, timeout: float = 15.0) -> None:
    """Wait until MiniMax (the emulator) is serving a call."""
    deadline = time.monotonic() + timeout
    while emu.stats()["in_flight"] == 0:
        dead = [w for w in fleet.workers if not w.alive]
        assert not dead, dead[0].log_tail()
        assert time.monotonic() < deadline, "no call reached the emulator"
        await asyncio.sleep(0.02)


async def usage_rows(worker: Worker, user_id: int | None = None) -> list[Usage]:
    async with worker.pipeline().sessions() as session:
        stmt = select(Usage).order_by(Usage.id)
        if user_id is not None:
            stmt = stmt.where(Usage.user_id == user_id)
        return list((await session.execute(stmt)).scalars())


async def used_ms(worker: Worker, user_id: int) -> int:
    async with worker.pipeline().sessions() as session:
        return int(
            (await session.execute(select(User.used_ms).where(User.id == user_id))).scalar_one()
        )


def speech(key: str, text: str, voice: str = "british-female") -> dict[str, Any]:
    return {"api_key": key, "text": text, "voice": voice}


def texts(n: int, seed: int, *, short_share: float = 0.6) -> list[str]:
    """One to four words (the shortest are estimated BELOW their real length) or a
    long paragraph (about 900 characters: 75-80 s estimated, 44-53 s spoken)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.randint(1, 4) if rng.random() < short_share else rng.randint(170, 180)
        out.append(" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + ".")
    return out


def max_in_window(times: Iterable[float], window: float = 60.0) -> int:
    """The most events any half-open window of ``window`` seconds holds."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def max_in_flight_per_worker(fake: FakeRunPod) -> dict[str, int]:
    """From the fake's side: jobs handed to a worker and not yet answered, at worst."""
    events: dict[str, list[tuple[float, int]]] = {}
    for d in fake.deliveries():
        events.setdefault(d.worker_id, []).append((d.at, 1))
    for r in fake.results():
        events.setdefault(r.worker_id, []).append((r.at, -1))
    peaks = {}
    for worker_id, changes in events.items():
        level = peak = 0
        for _, change in sorted(changes, key=lambda c: (c[0], c[1])):
            level += change
            peak = max(peak, level)
        peaks[worker_id] = peak
    return peaks


def check_wire(results: Sequence[Result], allowed: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every result is clean: audio, or a JSON error with a documented code and no
    internals. Returns the parsed errors grouped by code ("ok" lists the outputs)."""
    by_code: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        raw = json.dumps(result.body)
        assert "Traceback" not in raw and "traceback" not in raw and "hostname" not in raw
        if result.error is None:
            assert result.output["audio_base64"] and result.output["request_id"] == result.job_id
            by_code.setdefault("ok", []).append(result.output)
            continue
        error = result.error_json()
        assert error["code"] in allowed, error
        if error["code"] in THROTTLES:
            assert error["status"] == 429 and 0 < error["retry_after"] <= 60, error
        by_code.setdefault(error["code"], []).append(error)
    return by_code


# ---------------------------------------------------------------------------- a
async def test_one_user_hammering_a_fleet_stays_within_quota_rpm_and_streams(
    fleet: Fleet,
    fake: FakeRunPod,
    settings: Settings,
    make_user: UserFactory,
    worker: Worker,
    emu: Emulator,
) -> None:
    # The numbers make every limit bind, whatever the scheduling: the first job (a
    # paragraph: 78 s estimated, 50 s spoken) fits in 110 s, but once it is charged no
    # other paragraph (>= 75 s estimated) ever fits again, while the short jobs keep
    # fitting until the user's 40 requests per minute are spent; 6 streams for 4 x 20
    # slots. Only the order of the short jobs' refusals is left to chance.
    quota_s, rpm, streams = 110, 40, 6
    user_id, key = await make_user(
        "basic", monthly_seconds_override=quota_s, rpm_override=rpm, streams_override=streams
    )
    workers = [
        w.worker_id for w in await start(fleet, 4, fleet_env(settings, ODEATTS_MAX_CONCURRENCY=20))
    ]
    emu.configure(latency_seconds=0.4, per_char_latency_seconds=0.002)
    jobs = [("hammer-first", speech(key, texts(1, seed=3, short_share=0)[0]))] + [
        (f"hammer-{i:03d}", speech(key, text)) for i, text in enumerate(texts(149, seed=7))
    ]

    began = time.monotonic()
    fake.put(*jobs[0])  # alone, so that one long job is certainly admitted
    await until_in_flight(emu, fleet)
    fake.put_many(jobs[1:50])  # the workers take batches of up to 20 at once
    for wave in range(10):
        await asyncio.sleep(0.8)
        fake.put_many(jobs[50 + 10 * wave : 60 + 10 * wave])
    await wait_results(fake, len(jobs), timeout=60)
    await asyncio.sleep(0.3)  # a second answer for any job would show up here
    elapsed = time.monotonic() - began

    # Every job got exactly one clean answer, and one usage row.
    results = fake.results()
    assert sorted(r.job_id for r in results) == sorted(j for j, _ in jobs)
    by_code = check_wire(results, DOCUMENTED)
    rows = await usage_rows(worker, user_id)
    assert sorted(r.job_id for r in rows) == sorted(j for j, _ in jobs)
    assert {r.status for r in rows} <= {"succeeded", "refused"}
    ok = [r for r in rows if r.status == "succeeded"]
    assert {r.job_id for r in ok} == {r.job_id for r in results if r.error is None}
    for row, result in ((r, next(x for x in results if x.job_id == r.job_id)) for r in rows):
        if row.status == "refused":
            assert row.duration_ms is None and row.error_code == result.error_json()["code"]

    # Charged exactly what was synthesised, and no more than the quota allows.
    charged = await used_ms(worker, user_id)
    assert charged == sum(r.duration_ms or 0 for r in ok)
    overshoot = sum(max(0, (r.duration_ms or 0) - r.estimated_ms) for r in ok)
    assert charged <= quota_s * 1000 + overshoot
    stats = emu.stats()
    assert stats["requests"]["t2a_v2"] == len(ok)  # nothing synthesised and not charged

    # Every admitted job fitted beside what was already charged when it reserved, and
    # jobs were refused because the quota was really spent, not only reserved.
    # (settled_at is read just before the settle commits: SLACK keeps it safe.)
    slack = 1.5

    def charged_before(at: dt.datetime) -> int:
        cutoff = at.timestamp() - slack
        return sum(
            r.duration_ms or 0
            for r in ok
            if r.settled_at is not None and r.settled_at.timestamp() < cutoff
        )

    for row in ok:
        assert charged_before(row.reserved_at) + row.estimated_ms <= quota_s * 1000
    refused_for_quota = [r for r in rows if r.error_code == "quota_exceeded"]
    spent = [
        r
        for r in refused_for_quota
        if charged_before(r.reserved_at) + r.estimated_ms > quota_s * 1000
    ]
    assert len(spent) >= 10, "the quota never ran out"
    assert [r.job_id for r in ok if r.estimated_ms > 60_000] == ["hammer-first"]

    # RPM: no 60 s window holds more admissions than the plan allows, seen from our
    # rows and from MiniMax's side, and the limit was reached; streams: never more
    # than `streams` calls in flight at MiniMax.
    assert max_in_window(r.reserved_at.timestamp() for r in ok) <= rpm
    assert max_in_window(stats["t2a_timestamps"]) == len(ok) == rpm
    assert by_code.get("rate_limited")
    assert stats["in_flight_max"] <= streams

    # The fleet really was a fleet: every worker ran jobs, many at once.
    peaks = max_in_flight_per_worker(fake)
    assert set(peaks) == set(workers) and min(peaks.values()) >= 5
    assert max(peaks.values()) >= 16
    assert {ping[0] for ping in fake.pings()} == set(workers)
    assert fake.unauthorized == 0 and fake.bad_requests == [] and fake.stream_chunks() == []
    counts = {code: len(v) for code, v in by_code.items()}
    print(
        f"\n{len(jobs)} jobs in {elapsed:.1f} s: {counts}; charged {charged} ms of "
        f"{quota_s * 1000} (+{overshoot} ms under-estimated); worker peaks "
        f"{sorted(peaks.values())}; quota refusals {len(refused_for_quota)}, "
        f"{len(spent)} with the quota really spent"
    )


# ---------------------------------------------------------------------------- b
async def test_a_job_delivered_twice_is_synthesised_and_charged_once(
    fleet: Fleet,
    fake: FakeRunPod,
    settings: Settings,
    make_user: UserFactory,
    worker: Worker,
    emu: Emulator,
) -> None:
    user_id, key = await make_user("pro")
    first, second = [
        w.worker_id for w in await start(fleet, 2, fleet_env(settings, ODEATTS_MAX_CONCURRENCY=16))
    ]
    emu.configure(latency_seconds=1.5)
    job = speech(key, "Every good boy deserves fudge.")
    fake.put("twice", job, worker=first)  # at the same moment, to two workers
    fake.put("twice", job, worker=second)
    await wait_results(fake, 2, timeout=30)
    fake.put("twice", job)  # and again later, to whichever worker asks first
    await wait_results(fake, 3, timeout=30)
    await asyncio.sleep(0.3)

    deliveries = fake.deliveries("twice")
    assert len(deliveries) == 3 and {d.worker_id for d in deliveries[:2]} == {first, second}
    results = fake.results("twice")
    assert len(results) == 3
    by_code = check_wire(results, {"duplicate_job"})
    [done] = by_code["ok"]
    assert [e["job_status"] for e in by_code["duplicate_job"]] == ["in_progress", "completed"]
    assert all(e["status"] == 409 for e in by_code["duplicate_job"])
    [row] = await usage_rows(worker, user_id)
    assert (row.job_id, row.status, row.attempts) == ("twice", "succeeded", 1)
    assert (
        await used_ms(worker, user_id) == row.duration_ms == round(done["duration_seconds"] * 1000)
    )
    assert emu.stats()["requests"]["t2a_v2"] == 1


# ---------------------------------------------------------------------------- c
async def test_a_killed_workers_lease_and_reservation_lapse_after_the_ttl(
    fleet: Fleet,
    fake: FakeRunPod,
    settings: Settings,
    make_user: UserFactory,
    worker: Worker,
    emu: Emulator,
) -> None:
    # Production refuses under 30 s; here it only has to outlast the probes below, as the
    # survivor starts beside the victim (a start, ~1.5 s of CPU, would eat into it).
    ttl = 6
    user_id, key = await make_user("pro", streams_override=1)
    env = fleet_env(settings, ODEATTS_LEASE_TTL_SECONDS=ttl, ODEATTS_MAX_CONCURRENCY=16)
    [victim] = fleet.spawn(1, env, name="victim")
    [survivor] = fleet.spawn(1, env, name="survivor")
    await asyncio.to_thread(fleet.wait_ready, [victim, survivor])
    text = "A worker dies while this sentence is being spoken."
    emu.configure(latency_seconds=5.0)
    fake.put("doomed", speech(key, text), worker=victim.worker_id)
    await until_in_flight(emu, fleet)
    victim.kill()  # SIGKILL, mid-synthesis: no release, no settle, no result
    await asyncio.to_thread(victim.proc.wait, 10)
    emu.configure(latency_seconds=0.2)

    assert not fake.results("doomed")
    lease_key = f"{settings.redis_prefix}:leases:{user_id}"
    expiry_ms = await asyncio.to_thread(_redis, settings, lambda r: r.zscore(lease_key, "doomed#1"))
    assert expiry_ms is not None, "the dead worker's lease is not in Redis"
    left = await asyncio.to_thread(_seconds_until, settings, expiry_ms)
    assert 0 < left <= ttl
    expires_at = time.monotonic() + left

    async def run(job_id: str, job_input: dict[str, Any]) -> Result:
        fake.put(job_id, job_input, worker=survivor.worker_id)
        deadline = time.monotonic() + 20
        while not (found := fake.results(job_id)):
            assert time.monotonic() < deadline, f"no result for {job_id}"
            await asyncio.sleep(0.02)
        return found[0]

    usage = {"api_key": key, "action": "usage"}
    early = await run("probe-early", speech(key, "Hello?"))
    view = (await run("usage-early", usage)).output
    await asyncio.sleep(max(0.0, expires_at - 3.0 - time.monotonic()))
    late = await run("probe-late", speech(key, "Hello?"))
    assert time.monotonic() < expires_at - 1.0, "probe-late came too late to prove anything"
    while await asyncio.to_thread(_seconds_until, settings, expiry_ms) > -0.3:
        await asyncio.sleep(0.1)
    after = await run("probe-after", speech(key, "Hello?"))
    view_after = (await run("usage-after", usage)).output

    assert early.error_json()["code"] == late.error_json()["code"] == "concurrency_limited"
    assert after.error is None, after.body
    assert (
        await asyncio.to_thread(_redis, settings, lambda r: r.zscore(lease_key, "doomed#1")) is None
    )
    rows = {r.job_id: r for r in await usage_rows(worker, user_id)}
    assert {rows[p].error_code for p in ("probe-early", "probe-late")} == {"concurrency_limited"}
    doomed = rows["doomed"]
    assert (doomed.status, doomed.duration_ms, doomed.attempts) == ("reserved", None, 1)
    assert view["quota"]["reserved_seconds"] == doomed.estimated_ms / 1000
    assert view_after["quota"]["reserved_seconds"] == 0
    assert await used_ms(worker, user_id) == rows["probe-after"].duration_ms  # not the dead job

    # RunPod re-delivers the dead job: it takes its row over and is charged once.
    redelivered = await run("doomed", speech(key, text))
    assert redelivered.error is None, redelivered.body
    [row] = [r for r in await usage_rows(worker, user_id) if r.job_id == "doomed"]
    assert (row.status, row.attempts) == ("succeeded", 2)
    assert await used_ms(worker, user_id) == (rows["probe-after"].duration_ms or 0) + (
        row.duration_ms or 0
    )
    assert emu.stats()["requests"]["t2a_v2"] == 3  # doomed twice, probe-after once


def _redis(settings: Settings, call: Callable[[Redis], Any]) -> Any:
    redis = Redis.from_url(str(settings.plain_redis_url))
    try:
        return call(redis)
    finally:
        redis.close()


def _seconds_until(settings: Settings, expiry_ms: float) -> float:
    """Seconds from Redis's clock (the limiter's clock) to ``expiry_ms``."""
    seconds, micros = _redis(settings, lambda r: r.time())
    return float(expiry_ms - (int(seconds) * 1000 + int(micros) // 1000)) / 1000


# ---------------------------------------------------------------------------- d
async def test_a_burst_from_many_workers_and_users_stays_under_our_minimax_rpm(
    fleet: Fleet,
    fake: FakeRunPod,
    settings: Settings,
    make_user: UserFactory,
    worker: Worker,
    emu: Emulator,
) -> None:
    limit = 8
    users = [await make_user("pro", rpm_override=100, streams_override=20) for _ in range(3)]
    await start(
        fleet,
        3,
        fleet_env(
            settings,
            MINIMAX_RPM_LIMIT=limit,
            ODEATTS_UPSTREAM_MAX_WAIT_SECONDS=0,
            ODEATTS_MAX_CONCURRENCY=16,
        ),
    )
    emu.configure(latency_seconds=0.3)
    burst = [
        (f"burst-{u}-{i}", speech(key, text))
        for u, (_, key) in enumerate(users)
        for i, text in enumerate(texts(10, seed=u, short_share=1))
    ]
    fake.put_many(burst)
    await wait_results(fake, len(burst), timeout=30)
    await asyncio.sleep(0.5)
    again = [(f"again-{u}", speech(key, "Still busy?")) for u, (_, key) in enumerate(users)]
    fake.put_many(again)
    await wait_results(fake, len(burst) + len(again), timeout=30)

    results = fake.results()
    assert len(results) == len(burst) + len(again)
    by_code = check_wire(results, {"upstream_busy"})
    assert len(by_code["ok"]) == limit
    assert len(by_code["upstream_busy"]) == len(results) - limit
    assert all(e["status"] == 429 and e["retry_after"] > 50 for e in by_code["upstream_busy"])
    stats = emu.stats()
    assert stats["requests"]["t2a_v2"] == limit
    assert max_in_window(stats["t2a_timestamps"]) <= limit
    refused = 0
    for user_id, _ in users:  # the refused were not charged
        rows = await usage_rows(worker, user_id)
        assert {(r.status, r.error_code) for r in rows} <= {
            ("succeeded", None),
            ("refused", "upstream_busy"),
        }
        assert await used_ms(worker, user_id) == sum(r.duration_ms or 0 for r in rows)
        refused += sum(r.status == "refused" for r in rows)
    assert refused == len(by_code["upstream_busy"])
