"""Real Postgres and Redis for tests: reachability, per-test databases, skip rules.

A test that needs Postgres or Redis skips only when the service is unreachable AND
``CI`` is unset; under CI it fails, so a green CI always means the metering tests ran.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from odeatts.migrate import upgrade
from odeatts.models import Base

__all__ = ["PG_URL", "REDIS_URL", "PostgresTemplate", "SqliteTemplate", "require"]

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def require(service: str) -> str:
    """The URL of ``service`` ("postgres" or "redis"), or skip/fail as the rules say."""
    url, port = (PG_URL, 5432) if service == "postgres" else (REDIS_URL, 6379)
    if _reachable(url, port):
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{service} at {url} is unreachable and CI is set: these tests must run")
    pytest.skip(f"{service} unreachable at {url} (under CI this fails)")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + name).geturl()


class PostgresTemplate:
    """One migrated database per test process, emptied back to its migrated state for each
    test: the rows the migrations seeded (plans, voices) and the sequences as they were.

    Emptying takes a few milliseconds (DELETE in foreign-key order, then the seed rows
    copied back, in one transaction). A copy per test (``CREATE DATABASE … TEMPLATE``)
    took 80-200 ms of Postgres's time to create and drop, the largest single cost of
    the suite; TRUNCATE takes about 100 ms (new files for every table and index).
    Connections a test left open are terminated first, as ``DROP … WITH (FORCE)`` did.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"odeatts_t_{uuid.uuid4().hex[:12]}"
        self._admin = psycopg.connect(admin_url, autocommit=True)
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = _with_db(admin_url, self.name)
        upgrade(self.url)
        self._db = psycopg.connect(self.url, autocommit=True)
        # Children before parents for DELETE; parents before children to copy back.
        self._tables = [t.name for t in Base.metadata.sorted_tables]
        self._seeded = {
            table: self._copy_out(table)
            for table in self._tables
            if self._db.execute(f'SELECT EXISTS (SELECT FROM "{table}")').fetchone() == (True,)
        }
        self._sequences = self._db.execute(
            "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, 1),"
            " last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'"
        ).fetchall()

    def _copy_out(self, table: str) -> bytes:
        with self._db.cursor() as cur, cur.copy(f'COPY "{table}" TO STDOUT') as copy:
            return b"".join(bytes(chunk) for chunk in copy)

    def fresh(self) -> str:
        """The test process's database, as the migrations left it."""
        self._db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with self._db.transaction(), self._db.cursor() as cur:
            for table in reversed(self._tables):
                cur.execute(f'DELETE FROM "{table}"')
            for table in self._tables:
                if table in self._seeded:
                    with cur.copy(f'COPY "{table}" FROM STDIN') as copy:
                        copy.write(self._seeded[table])
            for sequence, value, called in self._sequences:
                cur.execute("SELECT setval(%s, %s, %s)", (sequence, value, called))
        return self.url

    def drop(self, url: str) -> None:
        """Nothing to do: the next ``fresh`` empties the database (a test that failed
        in its teardown leaves nothing behind for the next)."""

    def close(self) -> None:
        self._db.close()
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


class SqliteTemplate:
    """A migrated SQLite file copied per test."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        upgrade(f"sqlite+aiosqlite:///{self.path}")

    def fresh(self, directory: Path) -> str:
        target = directory / "odeatts.db"
        shutil.copy(self.path, target)
        return f"sqlite+aiosqlite:///{target}"
