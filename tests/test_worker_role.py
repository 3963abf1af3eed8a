"""The job path runs under the worker's database role (scripts/sql/worker_role.sql),
and that role can do nothing else: least privilege, on real Postgres (issue 16).

The script is applied to this test process's database once (it is idempotent, and the
per-test emptying keeps privileges); the worker connects as a login in the role, the
test's own set-up (users, cycles) as the owner, as operators would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts.config import Settings
from odeatts.models import BillingCycle, Usage, User
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, user_factory
from tests.support.services import PostgresTemplate

real = pytest.mark.parametrize("backend", ["real"], indirect=True)

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "sql" / "worker_role.sql"
LOGIN = "odeatts_worker_test"
REJECTED = {"endpoint": "t2a_v2", "kind": "base_resp", "code": 1026}

# A login in the role, made once per cluster whoever comes first (roles are cluster-wide,
# test processes run in parallel).
_LOGIN_SQL = f"""
DO $$
BEGIN
    CREATE ROLE {LOGIN} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT odeatts_worker TO {LOGIN};
"""


def apply_script(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(SCRIPT.read_text())
        owner.execute(_LOGIN_SQL)


@pytest.fixture(scope="session")
def role_url(pg_template: PostgresTemplate) -> str:
    """This process's database as the worker's login sees it."""
    apply_script(pg_template.url)
    parts = urlsplit(pg_template.url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{LOGIN}@{host}").geturl()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], role_url: str) -> Settings:
    """The worker's settings: its DATABASE_URL is the worker role's login."""
    return make_settings(DATABASE_URL=role_url)


@pytest.fixture
async def owner(make_settings: Callable[..., Settings]) -> AsyncIterator[Worker]:
    """The schema's owner, for what operators do (users, cycles) and for checking."""
    w = Worker(make_settings())
    yield w
    await w.aclose()


@pytest.fixture
def make_user(owner: Worker) -> UserFactory:
    """Users are made by the operators' role (the worker role cannot insert them)."""
    return user_factory(owner)


async def rows(owner: Worker) -> list[tuple[str, str, int, str | None]]:
    async with owner.pipeline().sessions() as session:
        found = (await session.execute(select(Usage).order_by(Usage.id))).scalars()
        return [(r.job_id, r.status, r.attempts, r.error_code) for r in found]


@real
async def test_the_worker_role_runs_speech_voices_and_usage(
    run_job: JobRunner, make_user: UserFactory, owner: Worker, settings: Settings
) -> None:
    assert settings.database_url is not None and LOGIN in settings.database_url.get_secret_value()
    _, key = await make_user()
    out = await run_job("role-1", api_key=key, text="Hello there.", voice="british-male")
    assert "error" not in out, out
    assert out["quota"]["used_seconds"] == out["duration_seconds"]
    assert (await run_job(api_key=key, action="voices"))["voices"]
    usage = await run_job(api_key=key, action="usage")
    assert [r["request_id"] for r in usage["recent"]] == ["role-1"]
    assert await rows(owner) == [("role-1", "succeeded", 1, None)]


@real
async def test_release_take_over_and_duplicate_under_the_worker_role(
    run_job: JobRunner, make_user: UserFactory, owner: Worker, emu: Emulator
) -> None:
    _, key = await make_user()
    job = {"api_key": key, "text": "Hello again.", "voice": "british-male"}
    emu.add_fault(REJECTED)
    assert (await run_job("role-2", **job))["error"]["code"] == "content_rejected"
    assert await rows(owner) == [("role-2", "failed", 1, "content_rejected")]  # released
    assert "error" not in await run_job("role-2", **job)  # the same id, taken over
    again = await run_job("role-2", **job)
    assert again["error"]["code"] == "duplicate_job"
    assert await rows(owner) == [("role-2", "succeeded", 2, None)]


@real
async def test_a_job_over_quota_and_a_cycle_roll_under_the_worker_role(
    run_job: JobRunner, make_user: UserFactory, owner: Worker
) -> None:
    _, full = await make_user(used_ms=600_000)
    out = await run_job("role-3", api_key=full, text="No room.", voice="british-male")
    assert out["error"]["code"] == "quota_exceeded"
    now = dt.datetime.now(dt.UTC)
    ended_id, ended = await make_user(
        used_ms=600_000,
        cycle_start=now - dt.timedelta(days=40),
        cycle_end=now - dt.timedelta(days=10),
    )
    assert "error" not in await run_job(api_key=ended, text="A new month.", voice="british-male")
    async with owner.pipeline().sessions() as session:
        user = await session.get(User, ended_id)
        archived = (await session.execute(select(BillingCycle))).scalars().all()
    assert user is not None and user.used_ms < 600_000 and user.cycle_end > now
    assert [a.user_id for a in archived] == [ended_id]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE plans SET rpm = 1000",
        "DELETE FROM usage",
        "UPDATE usage SET job_id = 'other'",
        "UPDATE users SET plan_id = 'enterprise'",
        "UPDATE users SET active = true",
        "INSERT INTO api_keys (user_id, prefix, key_hash) VALUES (1, 'x', 'y')",
        "UPDATE api_keys SET revoked_at = NULL",
        "DELETE FROM users",
        "INSERT INTO voices (name) VALUES ('mine')",
        "SELECT * FROM quota_adjustments",
        "SELECT * FROM alembic_version",
        "CREATE TABLE mine (id int)",
        "DROP FUNCTION odeatts_settle",
        "TRUNCATE usage",
    ],
)
def test_the_worker_role_is_refused_the_rest(role_url: str, statement: str) -> None:
    with (
        psycopg.connect(role_url, autocommit=True) as worker,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        worker.execute(statement)


def test_the_script_can_run_again(pg_template: PostgresTemplate, role_url: str) -> None:
    apply_script(pg_template.url)  # after an upgrade, say: nothing breaks, nothing doubles
    with psycopg.connect(role_url, autocommit=True) as worker:
        assert worker.execute("SELECT count(*) FROM plans").fetchone() == (4,)
