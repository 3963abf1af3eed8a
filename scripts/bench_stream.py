#!/usr/bin/env python3
"""Time to first audio vs total time, for a long text, streamed and not.

Runs the worker in-process (embedded defaults) against the MiniMax emulator with a
realistic delay, and prints the figures. No assertions: numbers for people.

    .venv/bin/python scripts/bench_stream.py [--chars 6000] [--latency 0.4] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minimax_emulator import Emulator
from odeatts import accounts
from odeatts.config import Settings
from odeatts.migrate import upgrade
from odeatts.worker import Worker

SENTENCE = "The quick brown fox jumps over the lazy dog near the riverbank. "


async def one(worker: Worker, key: str, text: str, stream: bool, n: int) -> tuple[float, float]:
    job = {
        "id": f"bench-{stream}-{n}",
        "input": {"api_key": key, "text": text, "voice": "british-female", "stream": stream},
    }
    start = time.perf_counter()
    first = None
    async for item in worker.handle_stream(job):
        if "error" in item:
            raise SystemExit(f"job failed: {item['error']}")
        if first is None and ("audio_base64" in item or "audio_url" in item):
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    text = (SENTENCE * (args.chars // len(SENTENCE) + 1))[: args.chars]
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(
            latency_seconds=args.latency,
            per_char_latency_seconds=args.per_char,
            chunk_delay_seconds=args.chunk_delay,
        ) as emu,
    ):
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        upgrade(url)
        worker = Worker(
            Settings(
                DATABASE_URL=url,
                MINIMAX_BASE_URL=emu.url,
                MINIMAX_API_KEY="emulator-key",
                ODEATTS_HANDLER="stream",
                MINIMAX_TPM_LIMIT=0,
                MINIMAX_RPM_LIMIT=0,
            )
        )
        created = await accounts.create_user(
            worker.pipeline().sessions,
            name="Bench",
            email="bench@example.com",
            plan="pro",
            pepper=worker.settings.pepper,
        )
        print(
            f"text: {len(text)} characters; emulator latency {args.latency}s + "
            f"{args.per_char * 1000:.2f} ms/char, chunk delay {args.chunk_delay}s"
        )
        for stream in (True, False):
            runs = [await one(worker, created.key.plain, text, stream, n) for n in range(args.runs)]
            firsts, totals = zip(*runs, strict=True)
            print(
                f"{'stream' if stream else 'plain ':6}  first audio "
                f"{statistics.median(firsts):6.2f} s   total {statistics.median(totals):6.2f} s"
                f"   (median of {args.runs})"
            )
        await worker.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument(
        "--per-char",
        type=float,
        default=0.002,
        help="generation time per character, spread over a stream",
    )
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
