"""Shared fixtures. The suite runs twice where it matters: on the embedded defaults
(SQLite + in-process limiter) and on real Postgres + Redis (``backend`` fixture).
MiniMax is the emulator, over real HTTP on loopback.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from minimax_emulator import Emulator
from odeatts import accounts
from odeatts.config import Settings
from odeatts.migrate import sync_url
from odeatts.worker import Worker
from scripts.localrun import free_port
from tests.support.cli import Invoke, make_invoke
from tests.support.proxy import TcpProxy
from tests.support.services import PostgresTemplate, SqliteTemplate, require

S3_BUCKET = "odeatts-test-audio"
PEPPER = "test-pepper-0123456789abcdef0123456789abcdef"
EMULATOR_KEY = "emulator-key"
_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "MINIMAX_API_KEY",
    "MINIMAX_BASE_URL",
    "MINIMAX_GROUP_ID",
    "ODEATTS_KEY_PEPPER",
    "ODEATTS_ENV",
    "ODEATTS_DATA_DIR",
    "ODEATTS_REDIS_PREFIX",
    "ODEATTS_LOG_FORMAT",
    "ODEATTS_CACHE",
    "ODEATTS_CACHE_SCOPE",
    "ODEATTS_CACHE_CHARGE",
    "ODEATTS_CACHE_WRITE",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own environment must not leak into a test."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """The admin CLI configures logging for its process (root at CRITICAL unless
    --verbose); run in-process, that must not silence the tests that follow."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(api_key=EMULATOR_KEY)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """The session's emulator, with faults, stats and clones cleared for this test and
    its latency settings put back after it (a slow emulator would slow every later test).
    A call an earlier test gave up on and the emulator still serves counts in no later
    test's stats (the emulator's stats epochs)."""
    emulator.reset()
    latency = emulator.configure()
    yield emulator
    emulator.reset()
    emulator.configure(**latency)


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 server over real HTTP, with the bucket S3_BUCKET.

    moto (Flask and all of AWS's models) and boto3 are imported here, by the tests that
    need them, not by every pytest process at collection (about a second of CPU each).
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    moto_s3(url).create_bucket(Bucket=S3_BUCKET)
    yield url
    server.stop()


def moto_s3(url: str) -> Any:
    """A boto3 S3 client of moto's server at ``url``, to look at what the worker stored
    (boto3 imported here, by the tests that need it, not at collection)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


@pytest.fixture(scope="session")
def pg_template() -> Iterator[PostgresTemplate]:
    template = PostgresTemplate(require("postgres"))
    yield template
    template.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(params=["embedded", "real"])
def backend(request: pytest.FixtureRequest) -> str:
    """embedded = SQLite + in-process limiter; real = Postgres + Redis."""
    return str(request.param)


# For a test whose outcome cannot depend on the backend (validation, output shapes, how a
# MiniMax reply maps to an error): it runs once, on the embedded backend. Whatever touches
# metering, limits, keys, quota, cycles, reports or SQL keeps running on both.
backend_independent = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "embedded":
        yield request.getfixturevalue("sqlite_template").fresh(tmp_path)
        return
    template: PostgresTemplate = request.getfixturevalue("pg_template")
    url = template.fresh()
    yield url
    template.drop(url)


@pytest.fixture
def redis_url(backend: str) -> str | None:
    return require("redis") if backend == "real" else None


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[TcpProxy]:
    """The test's Postgres behind a TCP proxy the test controls (stall, silence, cut;
    round trips counted): tests/support/proxy.py."""
    with TcpProxy(database_url, 5432) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[TcpProxy]:
    """The test's Redis behind a TCP proxy the test controls."""
    assert redis_url is not None, "a Redis proxy needs the real backend"
    with TcpProxy(redis_url, 6379) as proxy:
        yield proxy


@pytest.fixture
def make_settings(
    database_url: str, redis_url: str | None, emu: Emulator, tmp_path: Path
) -> Callable[..., Settings]:
    prefix = f"odeatts-test-{uuid.uuid4().hex[:8]}"

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "ODEATTS_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ODEATTS_REDIS_PREFIX": prefix,
            "MINIMAX_BASE_URL": emu.url,
            "MINIMAX_API_KEY": EMULATOR_KEY,
            "ODEATTS_KEY_PEPPER": PEPPER,
            "MINIMAX_RETRY_BASE_SECONDS": 0.01,
            "ODEATTS_DATA_DIR": str(tmp_path),
            # The audio cache is on by default in a deployment; tests that repeat a text
            # expect MiniMax to be asked each time, so it is on only where a test says
            # (tests/test_audio_cache.py).
            "ODEATTS_CACHE": False,
            # Where it is on, every miss is written (a test of one miss then one hit);
            # the default, "repeat", has its own tests (tests/test_audio_cache.py).
            "ODEATTS_CACHE_WRITE": "first",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    w = Worker(settings)
    yield w
    await w.aclose()


UserFactory = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
def make_user(worker: Worker) -> UserFactory:
    """Create a user (default plan free) and return (user id, plain API key)."""
    return user_factory(worker)


def user_factory(worker: Worker) -> UserFactory:
    """``make_user`` through ``worker``'s database connection (its role)."""
    counter = iter(range(1_000_000))

    async def make(plan: str = "free", **fields: Any) -> tuple[int, str]:
        n = next(counter)
        created = await accounts.create_user(
            worker.pipeline().sessions,
            name=f"User {n}",
            email=f"user{n}@example.com",
            plan=plan,
            pepper=worker.settings.pepper,
        )
        if fields:
            async with worker.pipeline().sessions() as session, session.begin():
                user = await session.get(type(created.user), created.user.id)
                for name, value in fields.items():
                    setattr(user, name, value)
        return created.user.id, created.key.plain

    return make


JobRunner = Callable[..., Coroutine[Any, Any, dict[str, Any]]]  # create_task() takes it


@pytest.fixture
def run_job(worker: Worker) -> JobRunner:
    """Run one job through the worker exactly as RunPod would; errors come back parsed."""

    async def run(job_id: str | None = None, **job_input: Any) -> dict[str, Any]:
        result = await worker.handle({"id": job_id or f"test-{uuid.uuid4()}", "input": job_input})
        if "error" in result:
            assert isinstance(result["error"], str), "RunPod wants error as a string"
            return {"error": json.loads(result["error"])}
        return result

    return run


@pytest.fixture
def invoke(settings: Settings) -> Invoke:
    """The admin CLI, with the same database, pepper and MiniMax as ``worker``."""
    return make_invoke(settings)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A synchronous engine on the test database, for checking what the CLI wrote."""
    assert settings.database_url
    eng = create_engine(sync_url(settings.effective_database_url), poolclass=NullPool)
    yield eng
    eng.dispose()
