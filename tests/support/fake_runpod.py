"""A fake RunPod job queue for the SDK's production loop, and real worker processes.

Why: concurrency across a fleet (many processes, many jobs each, one Postgres and one
Redis) can only be tested faithfully by running ``python handler.py`` exactly as
RunPod does, in its production loop, fed by something that speaks RunPod's worker
protocol. The runpod SDK (1.12.0, modules/rp_job.py, rp_http.py, rp_ping.py,
rp_scale.py) reads four URLs from the environment:

``RUNPOD_WEBHOOK_GET_JOB``     ``$ID`` -> the worker id (RUNPOD_POD_ID). The SDK appends
                               ``&job_in_progress=0|1``, so the URL must carry a query
                               string. When it wants more than one job it swaps
                               ``/job-take/`` for ``/job-take-batch/`` and appends
                               ``&batch_size=N``. 204 (or 400) = no job; a JSON object
                               ``{"id","input"}`` (job-take) or a list (job-take-batch)
                               otherwise. An empty answer makes the SDK ask again AT
                               ONCE, so this fake long-polls like RunPod does.
                               ``/job-stop/`` (same URL, derived) is long-polled for
                               ``{"jobsToStop": [ids]}``; 204 = nothing to stop.
``RUNPOD_WEBHOOK_POST_OUTPUT`` ``$RUNPOD_POD_ID`` -> worker id, then ``$ID`` -> job id,
                               then ``&isStream=false|true`` appended. POST, body = the
                               JSON result (``{"output"}`` and/or ``{"error"}``) sent
                               as ``application/x-www-form-urlencoded``; retried 3 times.
``RUNPOD_WEBHOOK_POST_STREAM`` same shape, one POST per generator chunk.
``RUNPOD_WEBHOOK_PING``        ``$RUNPOD_POD_ID`` -> worker id; GET every
                               RUNPOD_PING_INTERVAL ms from a separate (forked) process
                               with ``job_id`` (comma-separated in-progress ids).

Every request carries ``Authorization: <RUNPOD_AI_API_KEY>``. Pings start only when
RUNPOD_AI_API_KEY and RUNPOD_POD_ID are both set. A full worker sleeps 1 s before it
asks again (rp_scale.py). The fake serves from its own thread and loop (the MiniMax
emulator's BackgroundServer), so sync and async tests can use it; it never deduplicates, so
queuing an id twice is RunPod re-delivering it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from minimax_emulator.background import BackgroundServer
from odeatts.config import Settings

__all__ = [
    "Delivery",
    "FakeRunPod",
    "Fleet",
    "Result",
    "WorkerProcess",
    "worker_env",
]

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "fake-endpoint"


@dataclass(frozen=True)
class Delivery:
    """One hand-out of a job to a worker."""

    job_id: str
    worker_id: str
    at: float


@dataclass(frozen=True)
class Result:
    """One POSTed job result (or stream chunk) as the worker sent it."""

    job_id: str
    worker_id: str
    at: float
    body: dict[str, Any]
    is_stream: bool

    @property
    def error(self) -> Any:
        """The ``error`` the worker sent (RunPod wants a string), or None."""
        return self.body.get("error")

    @property
    def output(self) -> Any:
        return self.body.get("output")

    def error_json(self) -> dict[str, Any]:
        """The error string parsed (OdeaTTS sends JSON); raises if it is not JSON."""
        assert isinstance(self.error, str), f"job {self.job_id}: error is not a string: {self.body}"
        parsed = json.loads(self.error)
        assert isinstance(parsed, dict), self.error
        return parsed


@dataclass
class _Queued:
    job: dict[str, Any]
    worker_id: str | None  # None: any worker may take it


@dataclass
class _State:
    queue: list[_Queued] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    stream: list[Result] = field(default_factory=list)
    pings: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    to_stop: dict[str, list[str]] = field(default_factory=dict)
    unauthorized: int = 0
    bad_requests: list[str] = field(default_factory=list)


class FakeRunPod:
    """RunPod's worker-facing API on 127.0.0.1, on its own thread and event loop."""

    def __init__(self, *, api_key: str = "fake-runpod-key", poll_seconds: float = 1.0) -> None:
        self.api_key = api_key
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = _State()
        self._server = BackgroundServer(
            self._app, name="fake-runpod", shutdown_timeout=0.5, on_stop=self._answer_pollers
        )
        self._wake: asyncio.Event | None = None
        self._closing = False

    # ---------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        if not self._server.serving:
            raise RuntimeError("fake RunPod not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeRunPod:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    async def _answer_pollers(self) -> None:
        """Answer every held long-poll (204) before the server goes away."""
        self._closing = True
        self._wake_pollers()

    def __enter__(self) -> FakeRunPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _app(self) -> web.Application:
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        base = f"/v2/{ENDPOINT}"
        app.add_routes(
            [
                web.get(base + "/job-take/{worker}", self._take),
                web.get(base + "/job-take-batch/{worker}", self._take),
                web.get(base + "/job-stop/{worker}", self._stop_poll),
                web.post(base + "/job-done/{worker}/{job}", self._done),
                web.post(base + "/job-stream/{worker}/{job}", self._done),
                web.get(base + "/ping/{worker}", self._ping),
            ]
        )
        return app

    def env(self, worker_id: str) -> dict[str, str]:
        """The RUNPOD_* environment of a worker process served by this fake."""
        base = f"{self.url}/v2/{ENDPOINT}"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=cpu",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=cpu",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu=cpu",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_AI_API_KEY": self.api_key,
            "RUNPOD_PING_INTERVAL": "2000",
            # The built-in fitness checks want 4 GB free and a TCP connection to
            # 8.8.8.8:53; neither says anything about our code.
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
            "RUNPOD_LOG_LEVEL": "ERROR",
        }

    # ------------------------------------------------------------ test-side API
    def put(self, job_id: str, job_input: Mapping[str, Any], *, worker: str | None = None) -> None:
        """Queue a job; ``worker`` pins it to one worker id. The same id may be queued
        again (RunPod's re-delivery); the fake never deduplicates."""
        self.put_many([(job_id, job_input)], worker=worker)

    def put_many(
        self, jobs: Iterable[tuple[str, Mapping[str, Any]]], *, worker: str | None = None
    ) -> None:
        with self._lock:
            for job_id, job_input in jobs:
                self._state.queue.append(_Queued({"id": job_id, "input": dict(job_input)}, worker))
        self._notify()

    def stop_job(self, worker_id: str, job_id: str) -> None:
        """Signal a worker to stop a job (its next /job-stop poll returns it)."""
        with self._lock:
            self._state.to_stop.setdefault(worker_id, []).append(job_id)
        self._notify()

    def queued(self) -> int:
        with self._lock:
            return len(self._state.queue)

    def results(self, job_id: str | None = None) -> list[Result]:
        with self._lock:
            return [r for r in self._state.results if job_id is None or r.job_id == job_id]

    def stream_chunks(self, job_id: str | None = None) -> list[Result]:
        with self._lock:
            return [r for r in self._state.stream if job_id is None or r.job_id == job_id]

    def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._state.deliveries if job_id is None or d.job_id == job_id]

    def pings(self, worker_id: str | None = None) -> list[tuple[str, float, dict[str, str]]]:
        with self._lock:
            return [p for p in self._state.pings if worker_id is None or p[0] == worker_id]

    def polls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._state.polls)

    @property
    def unauthorized(self) -> int:
        with self._lock:
            return self._state.unauthorized

    @property
    def bad_requests(self) -> list[str]:
        with self._lock:
            return list(self._state.bad_requests)

    def wait_for(self, n_results: int, timeout: float) -> list[Result]:
        """Block until at least ``n_results`` results arrived; all results so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._state.results) < n_results:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self._state.results)} of {n_results} results "
                        f"after {timeout:.0f} s ({len(self._state.queue)} "
                        "jobs still queued)"
                    )
                self._changed.wait(left)
            return list(self._state.results)

    def wait_for_polls(self, worker_ids: Iterable[str], timeout: float) -> None:
        """Block until every worker has asked for a job at least once (it is up)."""
        wanted = set(worker_ids)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= set(self._state.polls):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(wanted - set(self._state.polls))
                    raise TimeoutError(f"workers never polled: {missing}")
                self._changed.wait(left)

    # ------------------------------------------------------------------ server
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
        loop = self._server.loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._wake_pollers)

    def _wake_pollers(self) -> None:
        assert self._wake is not None
        woken, self._wake = self._wake, asyncio.Event()
        woken.set()

    def _authorised(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") == self.api_key:
            return True
        with self._lock:
            self._state.unauthorized += 1
        return False

    async def _long_poll(self, grab: Any) -> Any:
        """Call ``grab()`` until it returns something or poll_seconds pass."""
        deadline = time.monotonic() + self.poll_seconds
        while True:
            found = grab()
            left = deadline - time.monotonic()
            if found or left <= 0 or self._closing:
                return found
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _grab_jobs(self, worker_id: str, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            taken: list[dict[str, Any]] = []
            kept: list[_Queued] = []
            for queued in self._state.queue:
                mine = queued.worker_id in (None, worker_id)
                if mine and len(taken) < limit:
                    taken.append(queued.job)
                else:
                    kept.append(queued)
            self._state.queue = kept
            now = time.time()
            self._state.deliveries.extend(Delivery(j["id"], worker_id, now) for j in taken)
            return taken

    async def _take(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401)
        worker_id = request.match_info["worker"]
        batch = "job-take-batch" in request.path
        try:
            limit = int(request.query.get("batch_size", "1"))
        except ValueError:
            limit = 0
        if "job_in_progress" not in request.query or limit < 1:
            with self._lock:
                self._state.bad_requests.append(str(request.rel_url))
            return web.Response(status=400)
        with self._changed:
            self._state.polls[worker_id] = self._state.polls.get(worker_id, 0) + 1
            self._changed.notify_all()

        def grab() -> list[dict[str, Any]]:
            # A worker killed mid-poll must not be handed jobs on its dead socket.
            if request.transport is None or request.transport.is_closing():
                return []
            return self._grab_jobs(worker_id, limit)

        jobs = await self._long_poll(grab)
        if not jobs:
            return web.Response(status=204)
        return web.json_response(jobs if batch else jobs[0])

    async def _stop_poll(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401)
        worker_id = request.match_info["worker"]

        def grab() -> list[str]:
            with self._lock:
                return self._state.to_stop.pop(worker_id, [])

        ids = await self._long_poll(grab)
        if not ids:
            return web.Response(status=204)
        return web.json_response({"jobsToStop": ids})

    async def _done(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401)
        try:
            body = json.loads(await request.text())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            with self._lock:
                self._state.bad_requests.append(str(request.rel_url))
            return web.Response(status=400)
        is_stream = request.query.get("isStream") == "true"
        result = Result(
            request.match_info["job"], request.match_info["worker"], time.time(), body, is_stream
        )
        with self._changed:
            target = self._state.stream if "/job-stream/" in request.path else self._state.results
            target.append(result)
            self._changed.notify_all()
        return web.Response(text="ok")

    async def _ping(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401)
        with self._lock:
            self._state.pings.append(
                (request.match_info["worker"], time.time(), dict(request.query))
            )
        return web.Response(text="ok")


# ------------------------------------------------------------------ processes
def worker_env(settings: Settings) -> dict[str, str]:
    """Settings as the environment variables that rebuild them in another process."""
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        value = getattr(settings, name)
        if not isinstance(alias, str) or value is None:
            continue
        env[alias] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


@dataclass
class WorkerProcess:
    """``python handler.py`` in RunPod's production loop, in its own process group
    (the SDK forks a ping process that a SIGKILL of the worker alone would orphan).
    If the test process itself is SIGKILLed, the worker dies with it (see _LAUNCH), but
    that ping process lives on, pinging a dead port every RUNPOD_PING_INTERVAL."""

    worker_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (worker and its ping process)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGKILL the group, then reap: teardown needs no grace, only certainty."""
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# Started in place of ``python handler.py``: asks the kernel to SIGKILL the worker if
# the test process dies (a worker whose fake RunPod is gone asks for jobs in a tight
# loop forever), then becomes ``python -u handler.py`` (same pid, same process group).
_LAUNCH = """
import ctypes, os, signal, sys
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        os._exit(1)
os.execv(sys.executable, [sys.executable, "-u", "handler.py"])
"""


class Fleet:
    """Worker processes started against one FakeRunPod; ``close()`` kills them all.

    Spawn from a thread that outlives the workers (the main thread): the kernel's
    parent-death signal follows the thread that forked, not the process.
    """

    def __init__(self, fake: FakeRunPod, log_dir: Path) -> None:
        self.fake = fake
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(
        self, count: int, env: Mapping[str, str], *, timeout: float = 60.0, name: str = "w"
    ) -> list[WorkerProcess]:
        """Spawn ``count`` workers and wait until each has asked for a job."""
        started = self.spawn(count, env, name=name)
        self.wait_ready(started, timeout)
        return started

    def spawn(self, count: int, env: Mapping[str, str], *, name: str = "w") -> list[WorkerProcess]:
        """Start ``count`` workers at once, without waiting for them."""
        return [self._spawn(f"{name}-{uuid.uuid4().hex[:6]}", env) for _ in range(count)]

    def _spawn(self, worker_id: str, env: Mapping[str, str]) -> WorkerProcess:
        log = self.log_dir / f"{worker_id}.log"
        full = {**os.environ, **env, **self.fake.env(worker_id), "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, str(os.getpid())],
                cwd=ROOT,
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(worker_id, proc, log)
        self.workers.append(worker)
        return worker

    def wait_ready(self, workers: list[WorkerProcess], timeout: float = 60.0) -> None:
        """Block until every worker has polled for a job; on failure, kill them."""
        deadline = time.monotonic() + timeout
        pending = {w.worker_id for w in workers}
        try:
            while pending:
                for worker in workers:
                    if not worker.alive:
                        raise RuntimeError(
                            f"worker {worker.worker_id} exited with "
                            f"{worker.proc.returncode}:\n{worker.log_tail()}"
                        )
                pending -= set(self.fake.polls())
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers {sorted(pending)} never asked for a job")
                time.sleep(0.05)
        except BaseException:
            for worker in workers:
                worker.stop(timeout=1)
            raise

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
