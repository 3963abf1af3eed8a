#!/usr/bin/env python3
"""How fast is a fleet? N worker processes (``python handler.py`` in RunPod's
production loop, fed by tests/support/fake_runpod.py) x their concurrency, one
Postgres, one Redis, the MiniMax emulator with a fixed latency. Prints figures only.

    .venv/bin/python scripts/bench_fleet.py --workers 4 --concurrency 16 --jobs 400

Figures: jobs/s from the first hand-out to the last result; per job, the time in the
worker (hand-out -> result POSTed) and the overhead beyond the emulator's own delay
(Postgres reserve + settle, Redis admit + release, HTTP, JSON, base64). Limits are set
out of the way (enterprise plan, huge overrides, MiniMax account limits off), so what
is measured is the path, not a refusal. Needs Postgres and Redis (TEST_DATABASE_URL,
TEST_REDIS_URL, defaults as in the tests).

Reading the figures: a full worker sleeps 1 s before it asks for more jobs (runpod
1.12.0 rp_scale.py, JobScaler.get_jobs), so with a backlog one worker finishes at most
about ``concurrency`` jobs per second, however short the jobs are; and every process
here (workers, emulator, Postgres) shares the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minimax_emulator import Emulator
from odeatts.config import Settings
from odeatts.migrate import upgrade
from odeatts.worker import Worker
from scripts.bench_users import unlimited_keys
from tests.support.fake_runpod import FakeRunPod, Fleet, Result, worker_env
from tests.support.services import PG_URL, REDIS_URL

TEXT = "Good morning, Lagos. This is OdeaTTS, speaking through our RunPod worker."


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=16, help="ODEATTS_MAX_CONCURRENCY")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--users", type=int, default=4, help="jobs are spread over this many users")
    p.add_argument("--latency", type=float, default=0.3, help="emulator seconds per call")
    p.add_argument("--text", default=TEXT)
    p.add_argument("--logs", type=Path, help="keep the workers' logs here (default: discard)")
    return p.parse_args()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def make_keys(settings: Settings, users: int) -> list[str]:
    worker = Worker(settings)
    try:
        return await unlimited_keys(worker.pipeline().sessions, users, pepper=settings.pepper)
    finally:
        await worker.aclose()


def run(args: argparse.Namespace, db_url: str, log_dir: Path) -> None:
    with (
        Emulator(latency_seconds=args.latency) as emu,
        FakeRunPod() as fake,
        Fleet(fake, log_dir) as fleet,
    ):
        settings = Settings(
            ODEATTS_ENV="test",
            DATABASE_URL=db_url,
            REDIS_URL=REDIS_URL,
            ODEATTS_REDIS_PREFIX=f"odeatts-bench-{uuid.uuid4().hex[:8]}",
            MINIMAX_BASE_URL=emu.url,
            MINIMAX_API_KEY=emu.api_key,
            ODEATTS_KEY_PEPPER="bench-pepper-0123456789abcdef0123456789abcdef",
            MINIMAX_RPM_LIMIT=0,
            MINIMAX_TPM_LIMIT=0,
            ODEATTS_MAX_CONCURRENCY=args.concurrency,
        )
        keys = asyncio.run(make_keys(settings, args.users))
        env = {**worker_env(settings), "ODEATTS_LOG_LEVEL": "WARNING"}
        started = time.monotonic()
        fleet.start(args.workers, env)
        print(f"{args.workers} workers up in {time.monotonic() - started:.1f} s")
        emu.reset()
        jobs = [
            (
                f"bench-{i}",
                {"api_key": keys[i % len(keys)], "text": args.text, "voice": "british-female"},
            )
            for i in range(args.jobs)
        ]
        fake.put_many(jobs)
        results = fake.wait_for(len(jobs), timeout=max(120.0, args.jobs * args.latency))
        report(args, fake, results, emu)


def report(
    args: argparse.Namespace, fake: FakeRunPod, results: list[Result], emu: Emulator
) -> None:
    handed = {d.job_id: d.at for d in fake.deliveries()}
    in_worker = [r.at - handed[r.job_id] for r in results]
    failed = [r for r in results if r.error is not None]
    span = max(r.at for r in results) - min(handed.values())
    overhead = [t - args.latency for t in in_worker]
    print(
        f"{len(results)} jobs ({len(failed)} failed) on {args.workers} workers x "
        f"{args.concurrency}: {len(results) / span:.1f} jobs/s over {span:.2f} s"
    )
    print(
        f"time in worker   p50 {statistics.median(in_worker) * 1000:7.1f} ms   "
        f"p95 {percentile(in_worker, 0.95) * 1000:7.1f} ms"
    )
    print(
        f"overhead per job p50 {statistics.median(overhead) * 1000:7.1f} ms   "
        f"p95 {percentile(overhead, 0.95) * 1000:7.1f} ms   (beyond the emulator's "
        f"{args.latency * 1000:.0f} ms)"
    )
    print(
        f"emulator: {emu.stats()['requests']['t2a_v2']} calls, "
        f"{emu.stats()['in_flight_max']} at most in flight"
    )
    if failed:
        print("first failure:", failed[0].error)


def main() -> None:
    args = parse_args()
    name = f"odeatts_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_URL.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(db_url)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            run(args, db_url, args.logs)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-fleet-") as logs:
                run(args, db_url, Path(logs))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
