#!/usr/bin/env python3
"""What the worker adds to a job beyond relaying MiniMax's audio: the issue-11 table.

    .venv/bin/python scripts/bench_overhead.py [--baseline REF] [--seq 200] [--jobs32 128]
                                               [--jobs200 600] [--profile FILE]

Side by side, in one run, on one canned upstream:

``relay``    httpx POST to the upstream, JSON, unhex, base64. Nothing else.
``floor``    the relay plus the job path's four round trips on the bare libraries
             (``floor_side``): what the design costs before any code of ours.
``worker``   ``Worker.handle`` of this tree (real Postgres and Redis, default settings
             but for MiniMax's account limits, which are off): what a RunPod job costs.
``baseline`` with ``--baseline REF``: the same for the tree at git REF (``git archive``
             into a temporary folder; nothing in the repository is touched).

The upstream is a tiny HTTP/1.1 server in its own process that answers every
``/v1/t2a_v2`` with one fixed, valid MiniMax T2A v2 reply (about 55 KB of MP3 as hex,
3.456 s of audio) after a delay each scenario sets. The same process runs TCP proxies in
front of Postgres and Redis that count round trips (a client's turn to speak after the
server spoke) for the round-trip figures; the timed scenarios connect directly, or
with ``--network-ms N`` through proxies that hold every chunk N ms each way.

Each side runs in a fresh interpreter of its own, so CPU time is its alone (CPU per job:
the process's CPU time over a scenario's jobs). Sides run in turn, ``--rounds`` times
(3): a shared machine's speed drifts during a run (by a third within minutes, seen
here), and rounds spread that drift over every side; latencies are pooled over the
rounds, CPU per job is the least round's. Latency is per job, from the call to its
answer; "N in flight" keeps N jobs running until the scenario's jobs are done.

Cold start, two ways. Through the SDK: ``python handler.py`` of the tree in RunPod's
production loop (tests/support/fake_runpod.py hands out jobs on loopback), the first
job queued before the process starts: process start to that job's hand-out and to its
answer, then jobs 2-10 one by one (their figure includes the fake's hand-out). In
process: the worker built as handler.main builds it, RunPod's first call of the
concurrency modifier on the job loop, the first job ``--fetch-ms`` later, then jobs
2-10. Import time: ``python -X importtime -c "import handler"`` in the tree, the
handler's cumulative time less the runpod SDK's, median of ``--import-runs``.

Needs Postgres and Redis (TEST_DATABASE_URL, TEST_REDIS_URL; defaults as in the tests);
without them only the relay runs. Prints figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEXT = "Good morning, Lagos. This is OdeaTTS, speaking through our RunPod worker."
PEPPER = "bench-pepper-0123456789abcdef0123456789abcdef"

# ------------------------------------------------------------------ the canned reply
# MPEG-1 Layer III, 128 kbit/s, 32 kHz, mono, no CRC: 576 bytes and 36 ms a frame.
_HEADER = bytes([0xFF, 0xFB, 0x98, 0xC4])
_FRAME = _HEADER + bytes(576 - len(_HEADER))
FRAMES = 96  # 55,296 bytes, 3,456 ms


def canned_reply() -> bytes:
    audio = _FRAME * FRAMES
    body = {
        "data": {"audio": audio.hex(), "status": 2},
        "extra_info": {
            "audio_length": FRAMES * 36,
            "audio_sample_rate": 32000,
            "audio_size": len(audio),
            "bitrate": 128000,
            "word_count": 12,
            "invisible_character_ratio": 0,
            "usage_characters": len(TEXT),
            "audio_format": "mp3",
            "audio_channel": 1,
        },
        "trace_id": "bench-trace",
        "base_resp": {"status_code": 0, "status_msg": "success"},
    }
    return json.dumps(body).encode()


# ------------------------------------------------- the services process (--serve)
class Counter:
    """Round trips and bytes through one proxy: a round trip is each time a client
    speaks after the server did (or first), whatever the number of packets."""

    def __init__(self) -> None:
        self.connections = self.round_trips = self.up = self.down = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Services:
    def __init__(self, pg: tuple[str, int], redis: tuple[str, int], network_ms: float) -> None:
        self.network = network_ms / 1000
        self.reply = canned_reply()
        self.delay = 0.0
        self.calls = 0
        self.targets = {"postgres": pg, "redis": redis}
        self.counters = {name: Counter() for name in self.targets}

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                method, path = line.split()[:2]
                status, payload = await self.route(path.decode(), body)
                head = (
                    f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\ntrace-id: bench-trace\r\n\r\n"
                ).encode()
                writer.write(head if method == b"HEAD" else head + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def route(self, path: str, body: bytes) -> tuple[str, bytes]:
        if path.startswith("/v1/t2a_v2"):
            self.calls += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            return "200 OK", self.reply
        if path == "/bench/delay":
            self.delay = float(json.loads(body)["seconds"])
            return "200 OK", b"{}"
        if path == "/bench/stats":
            stats = {name: c.as_dict() for name, c in self.counters.items()}
            return "200 OK", json.dumps({**stats, "calls": self.calls}).encode()
        return "404 Not Found", b"{}"

    def proxy(
        self, name: str, delay: float = 0.0
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        """Counts round trips; with ``delay``, holds every chunk that long each way first
        (a network between the worker and the service; epoll's clock is the millisecond,
        so a delay under 1 ms is 1 ms)."""
        counter = Counter() if delay else self.counters[name]
        host, port = self.targets[name]

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counter.connections += 1
            up_reader, up_writer = await asyncio.open_connection(host, port)
            turn = ["server"]

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await src.read(65536):
                        if up:
                            counter.up += len(data)
                            if turn[0] == "server":
                                counter.round_trips += 1
                                turn[0] = "client"
                        else:
                            counter.down += len(data)
                            turn[0] = "server"
                        if delay:
                            await asyncio.sleep(delay)
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(OSError):
                    dst.close()

            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

        return accept

    async def serve(self) -> None:
        http = await asyncio.start_server(self.http, "127.0.0.1", 0)
        ports = {"http": http.sockets[0].getsockname()[1]}
        for name in self.targets:
            server = await asyncio.start_server(self.proxy(name), "127.0.0.1", 0)
            ports[name] = server.sockets[0].getsockname()[1]
            if self.network:
                server = await asyncio.start_server(self.proxy(name, self.network), "127.0.0.1", 0)
                ports[f"{name}_net"] = server.sockets[0].getsockname()[1]
        print(json.dumps(ports), flush=True)
        await asyncio.Event().wait()


def _host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return parts._replace(
        netloc=f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    ).geturl()


# -------------------------------------------------------- a measured side (--side)
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


Job = Callable[[int], Awaitable[dict[str, Any]]]


FAILED: dict[str, int] = {}


async def in_flight(job: Job, jobs: int, width: int) -> list[float]:
    """``jobs`` calls with ``width`` running at any time; each call's latency (failed
    jobs too: they are counted by error code in FAILED)."""
    latencies: list[float] = []
    counter = iter(range(jobs))

    async def lane() -> None:
        for n in counter:
            start = time.perf_counter()
            result = await job(n)
            latencies.append(time.perf_counter() - start)
            if "error" in result:
                code = json.loads(result["error"])["code"]
                FAILED[code] = FAILED.get(code, 0) + 1

    await asyncio.gather(*(lane() for _ in range(width)))
    return latencies


class Side:
    """One side of the table, in its own interpreter."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.upstream = f"http://127.0.0.1:{args.ports['http']}"
        self.prefix = f"b{uuid.uuid4().hex[:8]}"
        self.keys: list[str] = getattr(args, "keys", None) or ["-"]

    async def set_delay(self, seconds: float) -> dict[str, Any]:
        import httpx

        async with httpx.AsyncClient(base_url=self.upstream) as client:
            await client.post("/bench/delay", json={"seconds": seconds})
            reply: dict[str, Any] = (await client.post("/bench/stats")).json()
            return reply

    def job(self, n: int, tag: str) -> dict[str, Any]:
        key = self.keys[n % len(self.keys)]
        return {
            "id": f"{self.prefix}-{tag}-{n}",
            # A text of its own: each job is a cache miss, as a new text is in
            # production (the audio cache's hits have their own bench_cache.py).
            "input": {
                "api_key": key,
                "text": f"{TEXT} ({self.prefix} {tag} {n})",
                "voice": "british-female",
            },
        }

    def numbered(
        self, call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], tag: str, first: int
    ) -> Job:
        return lambda n: call(self.job(first + n, tag))

    async def scenarios(
        self, call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        a = self.args
        out: dict[str, Any] = {}
        await self.set_delay(0)
        await in_flight(lambda n: call(self.job(n, "warm")), 20, 1)
        # CPU per job, sequential: the least over five runs of a fifth of the jobs each,
        # so that a burst of another process's work on a shared machine does not count.
        out["seq"], per_job = [], []
        size = max(a.seq // 5, 1)
        for chunk in range(5):
            cpu = time.process_time()
            out["seq"] += await in_flight(self.numbered(call, "seq", chunk * size), size, 1)
            per_job.append((time.process_time() - cpu) * 1000 / size)
        out["cpu_seq_ms"] = min(per_job)
        await self.set_delay(0.5)
        out["c32"] = await in_flight(lambda n: call(self.job(n, "c32")), a.jobs32, 32)
        await self.set_delay(0.2)
        cpu = time.process_time()
        out["c200"] = await in_flight(lambda n: call(self.job(n, "c200")), a.jobs200, 200)
        out["cpu_ms"] = (time.process_time() - cpu) * 1000 / a.jobs200
        await self.set_delay(0)
        return out


def relay_body() -> dict[str, Any]:
    """The MiniMax request the relay and the floor send (the worker builds its own)."""
    return {
        "model": "speech-02-turbo",
        "text": TEXT,
        "stream": False,
        "voice_setting": {
            "voice_id": "English_Graceful_Lady",
            "speed": 1.0,
            "vol": 1.0,
            "pitch": 0,
        },
        "audio_setting": {"sample_rate": 32000, "bitrate": 128000, "format": "mp3", "channel": 1},
        "output_format": "hex",
    }


def relay_side(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    side = Side(args)
    body = relay_body()

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=side.upstream, timeout=60) as client:

            async def relay(job: dict[str, Any]) -> dict[str, Any]:
                response = await client.post(
                    "/v1/t2a_v2", json=body, headers={"Authorization": "Bearer bench"}
                )
                data = response.json()
                audio = bytes.fromhex(data["data"]["audio"])
                return {"audio_base64": base64.b64encode(audio).decode("ascii")}

            return await side.scenarios(relay)

    return asyncio.run(main())


def timed_urls(args: argparse.Namespace) -> tuple[str, str]:
    """Where the timed scenarios reach Postgres and Redis: directly, or with
    ``--network-ms`` through the services process's delaying proxies."""
    if not args.network_ms:
        return args.db, REDIS_URL
    return _via(args.db, args.ports["postgres_net"]), _via(REDIS_URL, args.ports["redis_net"])


def floor_side(args: argparse.Namespace) -> dict[str, Any]:
    """The relay plus the job path's four round trips, made with the bare libraries and
    nothing of ours around them: psycopg (autocommit, prepared, five connections taken
    in turn) runs the reservation's function, redis-py the admission's script, then the
    relay, then the settle's function beside the lease's release (a ZREM). The
    functions and the script are the worker's own (migrations, limits.py); the audio's
    duration is taken as known (the worker reads it off the MP3's frames). What the
    design costs before any code of ours: the worker's figure less this one is ours."""
    import datetime as dt

    import httpx
    import psycopg
    from redis.asyncio import Redis

    sys.path.insert(0, args.src)
    from odeatts.keys import hash_key
    from odeatts.limits import _ADMIT
    from odeatts.metering import _RESERVE_SQL, _SETTLE_SQL

    side = Side(args)
    prefix = f"odeatts-{side.prefix}"
    hashes = {key: hash_key(key, PEPPER.encode()) for key in side.keys}
    body = relay_body()

    async def main() -> dict[str, Any]:
        db_url, redis_url = timed_urls(args)
        conns: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for _ in range(5):
            conns.put_nowait(await psycopg.AsyncConnection.connect(db_url, autocommit=True))
        redis = Redis.from_url(redis_url, max_connections=1000)  # 200 in flight, 2 calls each
        admit = redis.register_script(_ADMIT)

        async def pg(sql: str, params: tuple[Any, ...]) -> Any:
            conn = await conns.get()
            try:
                return await (await conn.execute(sql, params, prepare=True)).fetchone()
            finally:
                conns.put_nowait(conn)

        async with httpx.AsyncClient(base_url=side.upstream, timeout=60) as client:

            async def job(spec: dict[str, Any]) -> dict[str, Any]:
                now = dt.datetime.now(dt.UTC)
                text = spec["input"]["text"]
                row = await pg(
                    _RESERVE_SQL,
                    (
                        hashes[spec["input"]["api_key"]],
                        spec["id"],
                        "british-female",
                        "speech-02-turbo",
                        len(text),
                        5_000,
                        now,
                        now - dt.timedelta(seconds=330),
                    ),
                )
                assert row[0] == "reserved", row[0]
                usage_id, attempt, user_id = row[1], row[2], row[3]
                rpm = row[8] if row[9] is None else row[9]
                streams = row[10] if row[11] is None else row[11]
                lease = f"{spec['id']}#{attempt}"
                user = f"{prefix}:leases:{user_id}"
                keys = [
                    f"{prefix}:rpm:{user_id}",
                    user,
                    f"{prefix}:upstream",
                    f"{prefix}:void:{lease}",
                ]
                decided = await admit(
                    keys=keys, args=[rpm, streams, 330_000, lease, 60_000, 0, 0, len(text)]
                )
                if decided[0] != 1:
                    return {"error": json.dumps({"code": "rate_limited"})}
                response = await client.post(
                    "/v1/t2a_v2", json=body, headers={"Authorization": "Bearer bench"}
                )
                audio = bytes.fromhex(response.json()["data"]["audio"])
                when = dt.datetime.now(dt.UTC)
                settled: tuple[Any, ...] = (usage_id, attempt, user_id, 3_456, when, len(text))
                settled += (None, None, False, 1, 1, False, None)
                await asyncio.gather(pg(_SETTLE_SQL, settled), redis.zrem(user, lease))
                return {"audio_base64": base64.b64encode(audio).decode("ascii")}

            out = await side.scenarios(job)
        while not conns.empty():
            await conns.get_nowait().close()
        await redis.aclose()
        return out

    return asyncio.run(main())


def worker_side(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, args.src)
    # The worker as handler.main makes it (handler.py imports the SDK its own way); the SDK's
    # start, up to its first call of the concurrency modifier on the job loop, is taken
    # as instant; the first job comes --fetch-ms after that call.
    handler = importlib.import_module("handler")  # the tree's, by sys.path
    from odeatts.config import Settings

    side = Side(args)

    def settings(db: str, redis: str) -> Any:
        return Settings(
            ODEATTS_ENV="test",
            DATABASE_URL=db,
            REDIS_URL=redis,
            ODEATTS_REDIS_PREFIX=f"odeatts-{side.prefix}",
            MINIMAX_BASE_URL=side.upstream,
            MINIMAX_API_KEY="bench",
            ODEATTS_KEY_PEPPER=PEPPER,
            MINIMAX_RPM_LIMIT=0,
            MINIMAX_TPM_LIMIT=0,
            ODEATTS_LOG_FORMAT="json",  # production's
            # The audio cache's local directory (no bucket) starts empty each run.
            ODEATTS_DATA_DIR=tempfile.mkdtemp(prefix="bench-overhead-"),
        )

    handler.configure_logging(settings(args.db, REDIS_URL))  # stderr: a file, read on failure
    worker = handler.Worker(settings(*timed_urls(args)))
    if hasattr(worker, "preload"):  # as handler.main does, where it does
        worker.preload()

    async def main() -> dict[str, Any]:
        worker.concurrency(1)  # RunPod's first call, on the job loop
        if args.profile:
            return await profile(worker, side, args)
        await asyncio.sleep(args.fetch_ms / 1000)
        first = await in_flight(lambda n: worker.handle(side.job(n, "first")), 10, 1)
        out: dict[str, Any] = {"first": first}
        out |= await side.scenarios(worker.handle)
        await worker.aclose()
        # Round trips, through the counting proxies (a worker of its own, warmed up).
        counted = handler.Worker(
            settings(_via(args.db, args.ports["postgres"]), _via(REDIS_URL, args.ports["redis"]))
        )
        await in_flight(lambda n: counted.handle(side.job(n, "rt-warm")), 5, 1)
        before = await side.set_delay(0)
        await in_flight(lambda n: counted.handle(side.job(n, "rt")), args.rt_jobs, 1)
        after = await side.set_delay(0)
        await counted.aclose()
        out["failed"] = FAILED
        for name in ("postgres", "redis"):
            out[f"rt_{name}"] = (
                after[name]["round_trips"] - before[name]["round_trips"]
            ) / args.rt_jobs
        return out

    return asyncio.run(main())


async def profile(worker: Any, side: Side, args: argparse.Namespace) -> dict[str, Any]:
    """``--profile FILE``: cProfile over ``--seq`` sequential jobs after 20 to warm up;
    the pstats go to FILE, and the CPU per job (unprofiled, same jobs) is returned."""
    import cProfile

    await in_flight(lambda n: worker.handle(side.job(n, "warm")), 20, 1)
    cpu = time.process_time()
    await in_flight(lambda n: worker.handle(side.job(n, "plain")), args.seq, 1)
    plain_ms = (time.process_time() - cpu) * 1000 / args.seq
    profiler = cProfile.Profile()
    profiler.enable()
    await in_flight(lambda n: worker.handle(side.job(n, "prof")), args.seq, 1)
    profiler.disable()
    profiler.dump_stats(args.profile)
    await worker.aclose()
    return {"cpu_seq_ms": plain_ms, "failed": FAILED}


# ---------------------------------------------------------------- the orchestrator
def import_ms(src: Path, runs: int) -> float:
    """``import handler`` beyond ``import runpod``, in a fresh interpreter: median."""
    found = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import handler"],
            cwd=src,
            capture_output=True,
            text=True,
            check=True,
        )
        cumulative: dict[str, int] = {}
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$", line)
            if m and m.group(3) not in cumulative:  # the first (outermost) import of each
                cumulative[m.group(3)] = int(m.group(1))
        found.append((cumulative["handler"] - cumulative.get("runpod", 0)) / 1000)
    return statistics.median(found)


def reachable(url: str, port: int) -> bool:
    try:
        with socket.create_connection(_host_port(url, port), timeout=1):
            return True
    except OSError:
        return False


def make_database() -> tuple[str, Callable[[], None]]:
    import psycopg

    sys.path.insert(0, str(ROOT))
    from odeatts.migrate import upgrade

    name = f"odeatts_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return url, drop


async def make_keys(db_url: str, users: int) -> list[str]:
    from odeatts.config import Settings
    from odeatts.db import make_engine, make_sessionmaker
    from scripts.bench_users import unlimited_keys

    engine = make_engine(Settings(DATABASE_URL=db_url).effective_database_url)
    try:
        return await unlimited_keys(make_sessionmaker(engine), users, pepper=PEPPER.encode())
    finally:
        await engine.dispose()


def run_side(
    kind: str,
    src: Path,
    args: argparse.Namespace,
    extra: dict[str, Any],
    env: dict[str, str] | None = None,
) -> Any:
    spec = {**vars(args), **extra, "side": kind, "src": str(src)}
    spec.pop("baseline", None)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            [sys.executable, __file__, "--side-spec", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=src,
            env={**os.environ, **(env or {})},
        )
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{kind} side failed:\n{err.read()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sdk_cold_start(src: Path, args: argparse.Namespace, extra: dict[str, Any]) -> dict[str, Any]:
    """``python handler.py`` in RunPod's production loop (tests/support/fake_runpod.py
    hands out the jobs), the first job queued before the process starts: process start
    to the first job's hand-out and to its answer; then jobs 2-10 one by one."""
    sys.path.insert(0, str(ROOT))
    from odeatts.config import Settings
    from tests.support.fake_runpod import FakeRunPod, worker_env

    settings = Settings(
        ODEATTS_ENV="test",
        DATABASE_URL=extra["db"],
        REDIS_URL=REDIS_URL,
        ODEATTS_REDIS_PREFIX=f"odeatts-cold-{uuid.uuid4().hex[:8]}",
        MINIMAX_BASE_URL=f"http://127.0.0.1:{extra['ports']['http']}",
        MINIMAX_API_KEY="bench",
        ODEATTS_KEY_PEPPER=PEPPER,
        MINIMAX_RPM_LIMIT=0,
        MINIMAX_TPM_LIMIT=0,
        ODEATTS_LOG_FORMAT="json",
    )
    prefix = f"cold-{uuid.uuid4().hex[:8]}"
    job = {"api_key": extra["keys"][0], "text": TEXT, "voice": "british-female"}
    with FakeRunPod(poll_seconds=0.2) as fake, tempfile.TemporaryFile() as log:
        fake.put(f"{prefix}-0", job)
        env = {**os.environ, **worker_env(settings), **fake.env("cold"), "PYTHONUNBUFFERED": "1"}
        started = time.time()
        # Its own process group: the SDK forks a ping process that outlives the worker.
        proc = subprocess.Popen(
            [sys.executable, "-u", "handler.py"],
            cwd=src,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            first = fake.wait_for(1, timeout=60)[0]
            handed = fake.deliveries(first.job_id)[0].at
            later = []
            for n in range(1, 10):
                put = time.time()
                fake.put(f"{prefix}-{n}", job)
                later.append(fake.wait_for(n + 1, timeout=30)[-1].at - put)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        "sdk_ready": handed - started,
        "sdk_first": first.at - started,
        "sdk_first_job": first.at - handed,
        "sdk_later": later,
    }


def baseline_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", ref], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    names = list(results)

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        cells = []
        for name in names:
            try:
                cells.append(cell(results[name]))
            except (KeyError, IndexError, statistics.StatisticsError):  # not measured there
                cells.append("-")
        print(f"| {label} | " + " | ".join(cells) + " |")

    def p50_99(key: str) -> Callable[[dict[str, Any]], str]:
        return lambda r: (
            f"{fmt_ms(statistics.median(r[key]))} / {fmt_ms(percentile(r[key], 0.99))}"
            if key in r
            else "-"
        )

    x = f" x {args.rounds} rounds" if args.rounds > 1 else ""
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    row(f"latency sequential p50 / p99 ({args.seq} jobs{x}, upstream 0 ms)", p50_99("seq"))
    row(
        f"CPU per job, sequential (least of 5 runs{x})",
        lambda r: f"{r['cpu_seq_ms']:.1f} ms",
    )
    floor = next((r for name, r in results.items() if name.startswith("floor")), None)
    if floor is not None:  # what a side adds to the design's own cost
        row(
            "beyond the floor: sequential p50 / CPU per job",
            lambda r: (
                "-"
                if r is floor or r is results.get("relay") or "seq" not in r
                else f"{fmt_ms(statistics.median(r['seq']) - statistics.median(floor['seq']))}"
                f" / {r['cpu_seq_ms'] - floor['cpu_seq_ms']:.1f} ms"
            ),
        )
    row(
        "CPU per job (200 in flight, upstream 200 ms; least round)",
        lambda r: f"{r['cpu_ms']:.1f} ms",
    )
    row(f"p50 / p99 at 32 in flight, upstream 500 ms ({args.jobs32} jobs{x})", p50_99("c32"))
    row(f"p50 / p99 at 200 in flight, upstream 200 ms ({args.jobs200} jobs{x})", p50_99("c200"))
    row(
        "SDK cold start: process start to first job taken / answered",
        lambda r: (
            f"{fmt_ms(r['sdk_ready'])} / {fmt_ms(r['sdk_first'])}" if "sdk_first" in r else "-"
        ),
    )
    row(
        "SDK: first job (taken to answered) / median of jobs 2-10",
        lambda r: (
            f"{fmt_ms(r['sdk_first_job'])} / {fmt_ms(statistics.median(r['sdk_later']))}"
            if "sdk_first" in r
            else "-"
        ),
    )
    row(
        f"in process: first job ({args.fetch_ms:.0f} ms after the SDK's start) / jobs 2-10",
        lambda r: (
            f"{fmt_ms(r['first'][0])} / {fmt_ms(statistics.median(r['first'][1:]))}"
            if "first" in r
            else "-"
        ),
    )
    row(
        "round trips per job: Postgres / Redis",
        lambda r: f"{r['rt_postgres']:.1f} / {r['rt_redis']:.1f}" if "rt_postgres" in r else "-",
    )
    row(
        "jobs failed (all scenarios)",
        lambda r: (
            ", ".join(f"{n} {code}" for code, n in r["failed"].items()) or "none"
            if "failed" in r
            else "-"
        ),
    )
    row(
        "`import handler` beyond `import runpod`",
        lambda r: f"{r['import_ms']:.0f} ms" if "import_ms" in r else "-",
    )


def pooled(before: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """One side's figures over rounds: latencies pooled, CPU per job the least of the
    rounds (what the code costs when the machine lets it), failures summed, the rest
    (first jobs, round trips: the same each round) from the first round."""
    if before is None:
        return now
    for key, value in now.items():
        if key in ("seq", "c32", "c200"):
            before[key] = before[key] + value
        elif key.startswith("cpu_"):
            before[key] = min(before[key], value)
        elif key == "failed":
            before[key] = {
                c: before[key].get(c, 0) + value.get(c, 0) for c in {*before[key], *value}
            }
    return before


Side_ = tuple[str, str, Path, dict[str, str] | None]  # column, kind, tree, extra env


def sides_of(trees: list[tuple[str, Path]], variants: list[str]) -> list[Side_]:
    """The relay, each tree's worker, then this tree's with each variant's settings."""
    sides: list[Side_] = [("relay", "relay", ROOT, None)]
    if trees:  # Postgres and Redis are there
        sides.append(("floor: relay + the 4 round trips, bare", "floor", ROOT, None))
    sides += [(name, "worker", src, None) for name, src in trees]
    for variant in variants:
        env = dict(pair.split("=", 1) for pair in variant.split(","))
        sides.append((f"this tree, {variant}", "worker", ROOT, env))
    return sides


def orchestrate(args: argparse.Namespace) -> None:
    db_ok = reachable(PG_URL, 5432) and reachable(REDIS_URL, 6379)
    print(
        f"Postgres {PG_URL} and Redis {REDIS_URL}: "
        + ("reachable, used" if db_ok else "NOT reachable: the relay only")
    )
    pg, redis = _host_port(PG_URL, 5432), _host_port(REDIS_URL, 6379)
    services = subprocess.Popen(
        [sys.executable, __file__, "--serve", json.dumps([pg, redis, args.network_ms])],
        stdout=subprocess.PIPE,
        text=True,
    )
    drop: Callable[[], None] = lambda: None  # noqa: E731
    try:
        assert services.stdout is not None
        ports = json.loads(services.stdout.readline())
        extra: dict[str, Any] = {"ports": ports}
        results: dict[str, dict[str, Any]] = {}
        if args.profile:  # this tree's worker only, under cProfile
            db, drop = make_database()
            extra |= {"db": db, "keys": asyncio.run(make_keys(db, args.users))}
            out = run_side("worker", ROOT, args, extra)
            print(f"CPU per job, unprofiled: {out['cpu_seq_ms']:.2f} ms; pstats: {args.profile}")
            return
        if db_ok:
            db, drop = make_database()
            extra |= {"db": db, "keys": asyncio.run(make_keys(db, args.users))}
        with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp:
            trees = (
                [(f"worker @ {args.baseline}", baseline_tree(args.baseline, Path(tmp)))]
                if args.baseline
                else []
            )
            trees.append(("worker (this tree)", ROOT))
            sides = sides_of(trees, args.variant) if db_ok else sides_of([], [])
            # Rounds, every side in turn in each: a machine whose speed drifts during
            # the run (a shared VM does, by a third in minutes) slows every side alike.
            for _ in range(args.rounds):
                for name, kind, src, env in sides:
                    results[name] = pooled(results.get(name), run_side(kind, src, args, extra, env))
            for name, src in trees:
                results.setdefault(name, {})["import_ms"] = import_ms(src, args.import_runs)
                if db_ok:
                    results[name] |= sdk_cold_start(src, args, extra)
        print(
            f"canned upstream: {FRAMES * 576:,} bytes of MP3 as hex in a "
            f"{len(canned_reply()):,}-byte reply; {os.cpu_count()} cores; "
            f"{args.rounds} rounds, sides in turn (latencies pooled, CPU the least)"
            + (
                f"; timed scenarios {args.network_ms:g} ms each way from Postgres and Redis"
                if args.network_ms
                else ""
            )
            + "\n"
        )
        table(results, args)
    finally:
        services.kill()
        services.wait()
        drop()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="also measure the worker of this git ref")
    p.add_argument("--seq", type=int, default=200, help="sequential jobs")
    p.add_argument("--jobs32", type=int, default=128, help="jobs at 32 in flight")
    p.add_argument("--jobs200", type=int, default=600, help="jobs at 200 in flight")
    p.add_argument("--rt-jobs", type=int, default=20, help="jobs whose round trips are counted")
    p.add_argument("--users", type=int, default=50, help="jobs are spread over this many users")
    p.add_argument(
        "--fetch-ms", type=float, default=100.0, help="from the SDK's start to the first job"
    )
    p.add_argument("--import-runs", type=int, default=5)
    p.add_argument(
        "--network-ms",
        type=float,
        default=0.0,
        help="the timed scenarios reach Postgres and Redis through proxies that hold "
        "every chunk this long each way (a network; at least 1 ms); round trips and "
        "cold starts stay direct",
    )
    p.add_argument("--rounds", type=int, default=3, help="every side runs once per round, in turn")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="VAR=VALUE[,VAR=VALUE]",
        help="also measure this tree with these settings, e.g. ODEATTS_DB_POOL_SIZE=10",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="only cProfile this tree's worker over --seq sequential jobs; pstats to FILE",
    )
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--side-spec", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve:
        pg, redis, network_ms = json.loads(args.serve)
        asyncio.run(Services(tuple(pg), tuple(redis), network_ms).serve())
    elif args.side_spec:
        spec = argparse.Namespace(**json.loads(args.side_spec))
        sides = {"relay": relay_side, "floor": floor_side, "worker": worker_side}
        out = sides[spec.side](spec)
        print(json.dumps(out))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
