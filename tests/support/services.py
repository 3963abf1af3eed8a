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
    """One migrated template database per session; each test gets a fresh copy (~30 ms)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"odeatts_tmpl_{uuid.uuid4().hex[:10]}"
        self._admin = psycopg.connect(admin_url, autocommit=True)
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        upgrade(_with_db(admin_url, self.name))
        self._copies: list[str] = []

    def fresh(self) -> str:
        name = f"odeatts_t_{uuid.uuid4().hex[:12]}"
        self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        self._copies.append(name)
        return _with_db(self.admin_url, name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in [*self._copies, self.name]:
            self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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
