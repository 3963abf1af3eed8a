#!/usr/bin/env python3
"""Audio cache: a hit's latency against a miss's, side by side in one run.

Runs the worker in-process (SQLite, in-process limiter) against the MiniMax emulator
with a realistic delay. Each store gets ``--runs`` distinct prompts, said twice: the
first time is a miss (MiniMax, then the entry written after the answer), the second a
hit. Stores: the local directory (the embedded default) and, when moto is installed,
an S3 bucket (moto's server over loopback HTTP: no network, so a real bucket's round
trip comes on top). No assertions: numbers for people.

    .venv/bin/python scripts/bench_cache.py [--runs 20] [--latency 0.3] [--chars 120]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minimax_emulator import Emulator
from odeatts import accounts
from odeatts.config import Settings
from odeatts.migrate import upgrade
from odeatts.worker import Worker
from scripts.localrun import free_port

SENTENCE = "Thank you for calling. Your call matters to us; please stay on the line. "
BUCKET = "bench-cache"


@contextlib.contextmanager
def moto_bucket() -> Iterator[dict[str, str] | None]:
    """Settings of a bucket on moto's server, or None without moto."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    keys = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", **keys).create_bucket(
        Bucket=BUCKET
    )
    try:
        yield {
            "BUCKET_ENDPOINT_URL": url,
            "BUCKET_NAME": BUCKET,
            "BUCKET_ACCESS_KEY_ID": "test",
            "BUCKET_SECRET_ACCESS_KEY": "test",
        }
    finally:
        server.stop()


async def timed(worker: Worker, job: dict[str, Any]) -> tuple[float, bool]:
    start = time.perf_counter()
    out = await worker.handle(job)
    elapsed = time.perf_counter() - start
    if "error" in out:
        raise SystemExit(f"job failed: {out['error']}")
    await worker.pipeline().cache_writes()  # not timed: written after the answer
    return elapsed, bool(out.get("cached"))


async def measure(
    settings: Settings, name: str, runs: int, chars: int
) -> tuple[list[float], list[float]]:
    worker = Worker(settings)
    created = await accounts.create_user(
        worker.pipeline().sessions,
        name="Bench",
        email=f"bench-{name}@example.com",
        plan="enterprise",
        pepper=worker.settings.pepper,
    )
    misses, hits = [], []
    try:
        for n in range(runs + 1):  # the first prompt warms the worker up, not counted
            text = f"Prompt {name} {n}. " + SENTENCE * (chars // len(SENTENCE) + 1)
            base: dict[str, Any] = {
                "api_key": created.key.plain,
                "text": text[:chars],
                "voice": "british-female",
            }
            miss = await timed(worker, {"id": f"{name}-miss-{n}", "input": base})
            hit = await timed(worker, {"id": f"{name}-hit-{n}", "input": base})
            if (miss[1], hit[1]) != (False, True):
                raise SystemExit(f"{name}: expected a miss then a hit, got {miss} {hit}")
            if n:
                misses.append(miss[0])
                hits.append(hit[0])
    finally:
        await worker.aclose()
    return misses, hits


def quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return f"{statistics.median(values) * 1000:.1f} ms / {cuts[18] * 1000:.1f} ms"


async def main(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(latency_seconds=args.latency, per_char_latency_seconds=args.per_char) as emu,
        moto_bucket() as bucket,
    ):
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        upgrade(url)
        base: dict[str, Any] = {
            "DATABASE_URL": url,
            "MINIMAX_BASE_URL": emu.url,
            "MINIMAX_API_KEY": "emulator-key",
            "MINIMAX_TPM_LIMIT": 0,
            "MINIMAX_RPM_LIMIT": 0,
            "ODEATTS_DATA_DIR": tmp,
            "ODEATTS_CACHE": True,
            # Every miss written, so the second request is a hit: the miss measured is
            # one that writes (by default a text's second request; its first writes
            # nothing and costs as with the cache off).
            "ODEATTS_CACHE_WRITE": "first",
        }
        stores = {"local directory": Settings.model_validate(base)}
        if bucket is not None:
            stores["bucket (moto)"] = Settings.model_validate({**base, **bucket})
        rows = {}
        for n, (store, settings) in enumerate(stores.items()):
            rows[store] = await measure(settings, f"s{n}", args.runs, args.chars)
    print(
        f"{args.chars}-character prompts, {args.runs} of each; emulator latency "
        f"{args.latency}s + {args.per_char * 1000:.2f} ms/char; mp3, inline"
    )
    print("| store | miss p50 / p95 | hit p50 / p95 |")
    print("|---|---|---|")
    for store, (misses, hits) in rows.items():
        print(f"| {store} | {quantiles(misses)} | {quantiles(hits)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chars", type=int, default=120)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--per-char", type=float, default=0.002)
    asyncio.run(main(parser.parse_args()))
