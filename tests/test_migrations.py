"""Alembic migrations from an EMPTY database, on SQLite and on Postgres.

The per-test databases of conftest are copies of an already migrated template, so
they cannot show that the migrations themselves work; these tests start from nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    Row,
    Table,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from odeatts.migrate import alembic_config, downgrade, sync_url, upgrade
from odeatts.models import Base, Plan, User, Voice, utcnow
from tests.support.services import require

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
TABLES = {
    "plans",
    "users",
    "api_keys",
    "voices",
    "voice_aliases",
    "usage",
    "quota_adjustments",
    "billing_cycles",
    "pronunciations",
}
PLANS = {
    # id: (monthly_seconds, rpm, max_streams, price_cents)
    "free": (600, 10, 1, 0),
    "basic": (3600, 30, 2, 1900),
    "pro": (14400, 60, 5, 7000),
}
VOICES = {
    f"{accent}-{gender}": (language, gender)
    for accent, language in (("nigerian", "en-NG"), ("british", "en-GB"), ("american", "en-US"))
    for gender in ("male", "female")
}


@contextlib.contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """A brand-new database with no tables at all, as an application (async) URL."""
    if backend == "embedded":
        yield f"sqlite+aiosqlite:///{(directory / 'empty.db').as_posix()}"
        return
    admin_url = require("postgres")
    name = f"odeatts_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            parts = urlsplit(admin_url)
            yield parts._replace(scheme="postgresql+psycopg", path="/" + name).geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with empty_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    eng = create_engine(sync_url(empty_url), poolclass=NullPool)
    yield eng
    eng.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def plans(engine: Engine) -> dict[str, Row[Any]]:
    with engine.connect() as conn:
        return {row.id: row for row in conn.execute(select(Plan.__table__))}


def voices(engine: Engine) -> dict[str, Row[Any]]:
    with engine.connect() as conn:
        return {row.name: row for row in conn.execute(select(Voice.__table__))}


def version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_the_database_starts_empty(engine: Engine) -> None:
    assert tables(engine) == set()


def test_upgrade_creates_every_table(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    assert tables(engine) == TABLES
    assert version(engine) == HEAD


def test_upgrade_seeds_the_four_plans(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    seeded = plans(engine)
    assert set(seeded) == {*PLANS, "enterprise"}
    for plan_id, limits in PLANS.items():
        row = seeded[plan_id]
        assert (row.monthly_seconds, row.rpm, row.max_streams, row.price_cents) == limits
    enterprise = seeded["enterprise"]
    # Enterprise is priced per deal; its limits are a starting point for per-user overrides.
    assert enterprise.price_cents is None
    assert enterprise.monthly_seconds >= 14400 and enterprise.rpm >= 60
    assert enterprise.max_streams >= 5


def test_upgrade_seeds_the_six_voices(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    seeded = voices(engine)
    assert set(seeded) == set(VOICES)
    for name, (language, gender) in VOICES.items():
        row = seeded[name]
        assert (row.language, row.gender, row.kind, row.active) == (
            language,
            gender,
            "system",
            True,
        )
        assert row.minimax_voice_id
    assert len({row.minimax_voice_id for row in seeded.values()}) == 6


def test_downgrade_to_base_then_upgrade_again(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    downgrade(empty_url, "base")
    assert tables(engine) == set()
    assert version(engine) is None
    upgrade(empty_url)
    assert tables(engine) == TABLES
    assert len(plans(engine)) == 4 and len(voices(engine)) == 6


def job_path_functions(engine: Engine) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        found = conn.execute(text("SELECT proname FROM pg_proc WHERE proname LIKE 'odeatts_%'"))
        return set(found.scalars())


def test_the_job_path_functions_come_and_go_with_0004(
    backend: str, empty_url: str, engine: Engine
) -> None:
    """Postgres reserves and settles in server-side functions (metering.py); SQLite has none."""
    upgrade(empty_url)
    # 0006's and 0010's new versions beside 0004's: workers of the previous version
    # call the old.
    both = {
        "odeatts_reserve",
        "odeatts_settle",
        "odeatts_reserve2",
        "odeatts_settle2",
        "odeatts_settle3",
    }
    expected = both if backend == "real" else set()
    assert job_path_functions(engine) == expected
    downgrade(empty_url, "0005")
    assert job_path_functions(engine) == (
        {"odeatts_reserve", "odeatts_settle"} if backend == "real" else set()
    )
    downgrade(empty_url, "0003")
    assert job_path_functions(engine) == set()
    assert tables(engine) == TABLES - {"voice_aliases", "pronunciations"}  # 0007, 0008
    upgrade(empty_url)
    assert job_path_functions(engine) == expected


def test_upgrade_twice_is_a_no_op(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            cast(Table, User.__table__)
            .insert()
            .values(
                name="Ada",
                email="ada@example.com",
                plan_id="free",
                active=True,
                used_ms=1234,
                cycle_start=now,
                cycle_end=now,
                created_at=now,
            )
        )
    upgrade(empty_url)
    assert version(engine) == HEAD
    assert len(plans(engine)) == 4 and len(voices(engine)) == 6
    with engine.connect() as conn:
        assert conn.execute(select(User.__table__.c.used_ms)).scalars().all() == [1234]


def schema_differences(engine: Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def test_migrated_schema_matches_the_models(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    # No exceptions needed: types (UtcDateTime compares as its DateTime impl), nullability,
    # indexes, unique constraints and foreign keys all agree on both backends.
    assert schema_differences(engine, Base.metadata) == []


def test_the_schema_comparison_can_fail(empty_url: str, engine: Engine) -> None:
    """Guards the test above: a model the migrations do not know is reported."""
    upgrade(empty_url)
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["users"].append_column(Column("nickname", Integer, nullable=True))
    differences = schema_differences(engine, drifted)
    assert [d[0] for d in differences if isinstance(d, tuple)] == ["add_column"]


def ledger_indexes(engine: Engine) -> dict[str, list[str | None]]:
    found = {
        **{f"usage.{i['name']}": i for i in inspect(engine).get_indexes("usage")},
        **{f"users.{i['name']}": i for i in inspect(engine).get_indexes("users")},
    }
    names = ("usage.ix_usage_reserved", "users.ix_users_cycle_end")
    return {name: found[name]["column_names"] for name in names if name in found}


def test_0005_adds_the_ledger_indexes_and_its_downgrade_drops_them(
    empty_url: str, engine: Engine
) -> None:
    """The partial index on reserved rows (both backends have partial indexes) and the
    index reset-due finds ended cycles by."""
    upgrade(empty_url)
    assert ledger_indexes(engine) == {
        "usage.ix_usage_reserved": ["reserved_at"],
        "users.ix_users_cycle_end": ["cycle_end"],
    }
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_usage_reserved'"
        else:
            sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_usage_reserved'"
        definition = conn.execute(text(sql)).scalar_one()
    assert "WHERE" in definition.upper() and "reserved'" in definition
    downgrade(empty_url, "0004")
    assert ledger_indexes(engine) == {}
    upgrade(empty_url)
    assert len(ledger_indexes(engine)) == 2


def test_0008_adds_voice_aliases_and_its_downgrade_drops_them(
    empty_url: str, engine: Engine
) -> None:
    upgrade(empty_url)
    assert "voice_aliases" in tables(engine)
    downgrade(empty_url, "0007")
    assert tables(engine) == TABLES - {"voice_aliases"}


@pytest.mark.parametrize("backend", ["real"], indirect=True)
def test_0009_makes_the_ledgers_time_index_brin_and_its_downgrade_a_btree_again(
    empty_url: str, engine: Engine
) -> None:
    def definition() -> str:
        with engine.connect() as conn:
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_usage_created_at'"
            return str(conn.execute(text(sql)).scalar_one())

    upgrade(empty_url)
    assert "USING brin (created_at)" in definition() and "autosummarize='on'" in definition()
    downgrade(empty_url, "0008")
    assert "USING btree (created_at)" in definition()
