"""The async engine: Postgres (psycopg 3) in production, a SQLite file by default.

Engines are created inside the running event loop (RunPod calls ``asyncio.run``
more than once per process; a pool made in one loop is useless in the next).
``database_errors`` is the one boundary where SQLAlchemy's and the drivers' failures
become ``ServiceUnavailable``.

``autocommit`` lends the job path a pooled Postgres connection as psycopg's own, in
autocommit mode: one statement is one round trip (no BEGIN, no COMMIT, no ROLLBACK on
return to the pool), see metering.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Select, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import greenlet_spawn

from odeatts.errors import ServiceUnavailable

__all__ = [
    "Sessions",
    "autocommit",
    "database_errors",
    "engine_of",
    "insert_for",
    "is_sqlite",
    "make_engine",
    "make_sessionmaker",
    "on_postgres",
    "reading",
    "stream_rows",
]

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]


@contextmanager
def database_errors() -> Iterator[None]:
    """Translate SQLAlchemy/driver failures into ``ServiceUnavailable`` (one boundary)."""
    try:
        yield
    except (SQLAlchemyError, psycopg.Error, OSError) as exc:
        # No traceback here: an outage would write one per job. The job path's breaker
        # (odeatts.resilience) logs the outage once; the CLI prints one line.
        log.debug("database unavailable: %s", type(exc).__name__, exc_info=exc)
        raise ServiceUnavailable() from exc


def on_postgres(where: AsyncSession | AsyncEngine) -> bool:
    """Whether a session or an engine talks to Postgres (else the embedded SQLite)."""
    bind = where.get_bind() if isinstance(where, AsyncSession) else where
    return bind.dialect.name == "postgresql"


async def stream_rows(
    connection: AsyncConnection, stmt: Select[Any], *, chunk: int = 2000
) -> AsyncGenerator[Sequence[Any], None]:
    """The rows of ``stmt`` as they arrive, in constant memory, in the connection's
    transaction (for an operator's report of every user).

    On Postgres through psycopg's own streaming (rows come in chunks of ``chunk``)
    rather than SQLAlchemy's server-side cursor: Postgres never runs a cursor's query
    in parallel, and the usage report's one grouped query over a month of a 10M-row
    ledger takes half the time with its parallel workers (README "Benchmarks"). A
    driver error is raised as SQLAlchemy's, as from any other statement."""
    if connection.dialect.name != "postgresql":
        result = await connection.stream(stmt)
        try:
            async for rows in result.partitions(chunk):
                for row in rows:
                    yield row
        finally:
            await result.close()
        return
    compiled = stmt.compile(dialect=connection.dialect)
    raw = await connection.get_raw_connection()
    pg = cast(psycopg.AsyncConnection[Any], raw.driver_connection)
    size = chunk if psycopg.pq.version() >= 170000 else 1  # chunks need libpq 17
    try:
        async with pg.cursor() as cursor:
            async for row in cursor.stream(str(compiled), compiled.params, size=size):
                yield row
    except psycopg.Error as exc:
        raise DBAPIError.instance(str(compiled), None, exc, psycopg.Error) from exc


def insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` on both backends."""
    return pg_insert if on_postgres(session) else sqlite_insert


def engine_of(sessions: Sessions) -> AsyncEngine:
    """The engine a sessionmaker was made for (``make_sessionmaker``)."""
    return cast(AsyncEngine, sessions.kw["bind"])


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled Postgres connection as psycopg's own, in autocommit mode.

    Straight from the pool, without SQLAlchemy's Connection around it (its checkout,
    execution options and isolation-level reset cost 0.36 ms a call; this, 0.12 ms).
    Autocommit is set and reset on the driver's connection (no round trip), and the
    pool's reset-on-return ROLLBACK is skipped by psycopg on an idle connection. A
    connection left mid-query (a call abandoned at its deadline) or broken is closed,
    not handed to the next job. Wrap the call in ``database_errors``.
    """
    pooled = await greenlet_spawn(engine.sync_engine.raw_connection)
    pg = cast(psycopg.AsyncConnection[Any], pooled.driver_connection)
    try:
        await pg.set_autocommit(True)
        yield pg
    finally:
        if pg.broken or pg.pgconn.transaction_status != TransactionStatus.IDLE:
            await greenlet_spawn(pooled.invalidate)
        else:
            await pg.set_autocommit(False)
            await greenlet_spawn(pooled.close)


@asynccontextmanager
async def reading(sessions: Sessions) -> AsyncIterator[AsyncSession]:
    """A session for the worker's reads, ended by COMMIT rather than SQLAlchemy's
    ROLLBACK: psycopg forgets a connection's prepared statements at every ROLLBACK (and
    deallocates them all), and the job path's next statement on that pooled connection
    would be prepared again, a round trip in a job's time. Wrap in ``database_errors``."""
    async with sessions() as session, session.begin():
        yield session


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    timeout_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
) -> AsyncEngine:
    """``timeout_seconds`` bounds every statement on the server too, and a row lock is
    waited for at most ``lock_timeout_seconds`` (default: the same). The client side
    has its own deadline (odeatts.resilience for the worker, the admin CLI's per
    command); TCP keepalives find a peer that vanished without a word."""
    if is_sqlite(url):
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {
        "connect_timeout": max(2, round(min(timeout_seconds or 5, 10))),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": 15_000,
    }
    if timeout_seconds is not None:
        ms = int(timeout_seconds * 1000)
        lock_ms = int((lock_timeout_seconds or timeout_seconds) * 1000)
        connect_args["options"] = (
            f"-c statement_timeout={ms} -c lock_timeout={lock_ms} "
            f"-c idle_in_transaction_session_timeout={ms * 4}"
        )
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_timeout=timeout_seconds or 10,
        connect_args=connect_args,
    )


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    # SQLite's default deferred transactions let two writers both read the quota and
    # then deadlock on upgrade; BEGIN IMMEDIATE takes the write lock up front, which
    # is what SELECT ... FOR UPDATE does for us on Postgres.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)
