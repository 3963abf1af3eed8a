"""Settings from the environment: embedded defaults, URL normalising, production refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from odeatts.config import DEV_PEPPER, Settings, normalise_database_url

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "ODEATTS_ENV": "production",
    "DATABASE_URL": "postgres://odea:secret@db.internal:5432/odeatts",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "ODEATTS_KEY_PEPPER": "p" * 32,
    "MINIMAX_API_KEY": "mm-key",
    "BUCKET_NAME": "odeatts-audio",
    "BUCKET_ENDPOINT_URL": "https://s3.example.com",
}


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def refusal() -> str:
    """The reason Settings refuses, as the handler prints it (not pydantic's input dump)."""
    with pytest.raises(ValidationError) as info:
        Settings()
    [error] = info.value.errors()
    return str(error["msg"])


def test_defaults_are_embedded_sqlite_under_the_data_dir_and_no_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ODEATTS_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.env == "development"
    assert settings.database_url is None and settings.redis_url is None
    assert (
        settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path.as_posix()}/odeatts.db"
    )
    assert settings.key_pepper is None and settings.pepper == DEV_PEPPER.encode()


def test_default_data_dir_is_the_projects_var_whatever_the_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A relative default put a new, empty database wherever an operator stood."""
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite+aiosqlite:///{(ROOT / 'var').as_posix()}/odeatts.db"
    assert Settings().effective_database_url == expected
    monkeypatch.setenv("ODEATTS_DATA_DIR", "")  # as `.env.example` leaves it
    assert Settings().data_dir == ROOT / "var"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql+psycopg://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_gets_the_psycopg_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    settings = Settings()
    assert settings.database_url and settings.database_url.get_secret_value() == expected
    assert settings.effective_database_url == expected
    assert normalise_database_url(given) == expected


def test_minimax_base_url_default_and_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().minimax_base_url == "https://api.minimax.io"
    monkeypatch.setenv("MINIMAX_BASE_URL", "http://127.0.0.1:8080/")
    assert Settings().minimax_base_url == "http://127.0.0.1:8080"


def test_complete_production_config_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION)
    settings = Settings()
    assert settings.env == "production"
    assert settings.effective_database_url == (
        "postgresql+psycopg://odea:secret@db.internal:5432/odeatts"
    )
    assert settings.plain_redis_url == "redis://cache.internal:6379/0"
    assert settings.pepper == b"p" * 32


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite+aiosqlite:///var/odeatts.db"}, "DATABASE_URL"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"ODEATTS_KEY_PEPPER": None}, "ODEATTS_KEY_PEPPER"),
        ({"ODEATTS_KEY_PEPPER": "p" * 31}, "ODEATTS_KEY_PEPPER"),
        ({"ODEATTS_KEY_PEPPER": DEV_PEPPER}, "ODEATTS_KEY_PEPPER"),
        ({"MINIMAX_API_KEY": None}, "MINIMAX_API_KEY"),
        ({"BUCKET_NAME": None}, "BUCKET_NAME"),
        ({"BUCKET_ENDPOINT_URL": None}, "BUCKET_NAME"),
        ({"ODEATTS_LEASE_TTL_SECONDS": "10"}, "ODEATTS_LEASE_TTL_SECONDS"),
    ],
    ids=[
        "no-db",
        "sqlite-db",
        "no-redis",
        "no-pepper",
        "short-pepper",
        "dev-pepper",
        "no-minimax-key",
        "no-bucket",
        "no-bucket-endpoint",
        "short-lease",
    ],
)
def test_production_refuses_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str | None], named: str
) -> None:
    set_env(monkeypatch, {k: v for k, v in PRODUCTION.items() if k not in overrides})
    set_env(monkeypatch, {k: v for k, v in overrides.items() if v is not None})
    message = refusal()
    assert "production" in message and named in message
    # Only what is wrong is named, so the operator is not sent hunting.
    others = {
        "DATABASE_URL",
        "REDIS_URL",
        "ODEATTS_KEY_PEPPER",
        "MINIMAX_API_KEY",
        "BUCKET_NAME",
    } - {named}
    assert not any(other in message for other in others)


def test_production_names_everything_missing_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODEATTS_ENV", "production")
    message = refusal()
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "ODEATTS_KEY_PEPPER",
        "MINIMAX_API_KEY",
        "BUCKET_NAME",
    ):
        assert name in message


def test_embedded_defaults_are_fine_outside_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODEATTS_ENV", "test")
    monkeypatch.setenv("ODEATTS_KEY_PEPPER", "short")
    assert Settings().pepper == b"short"


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION)
    text = repr(Settings())
    assert "p" * 32 not in text and "mm-key" not in text


def test_handler_refuses_to_start_in_production_without_config(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ODEATTS_ENV": "production"}
    proc = subprocess.run(
        [sys.executable, "handler.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "production" in lines[0] and "DATABASE_URL" in lines[0]
    assert "MINIMAX_API_KEY" in lines[0]


def test_env_example_lists_every_setting() -> None:
    """.env.example is the operator's list of every variable: a new setting must be in it."""
    listed = (ROOT / ".env.example").read_text()
    aliases = [field.validation_alias for field in Settings.model_fields.values()]
    assert [name for name in aliases if f"{name}=" not in listed] == []


def test_url_passwords_show_nowhere_but_where_they_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(
        monkeypatch,
        {
            **PRODUCTION,
            "DATABASE_URL": "postgresql://odea:pw-db-1@db/odeatts",
            "REDIS_URL": "rediss://:pw-redis-2@cache:6380/0",
        },
    )
    settings = Settings()
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.model_dump()),
        str(settings.model_dump()),
        settings.model_dump_json(),
    ):
        assert "pw-db-1" not in shown and "pw-redis-2" not in shown, shown
        assert "p" * 32 not in shown and "mm-key" not in shown
    assert settings.effective_database_url == "postgresql+psycopg://odea:pw-db-1@db/odeatts"
    assert settings.plain_redis_url == "rediss://:pw-redis-2@cache:6380/0"


def test_an_empty_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"DATABASE_URL": "", "REDIS_URL": ""})
    settings = Settings()
    assert settings.database_url is None and settings.plain_redis_url is None


def test_secret_values_are_the_secrets_and_the_url_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(
        monkeypatch,
        {
            **PRODUCTION,
            "DATABASE_URL": "postgresql://odea:s3cr%40t@db/odeatts",
            "REDIS_URL": "redis://cache:6379/0",
            "BUCKET_SECRET_ACCESS_KEY": "bucket-secret",
        },
    )
    assert sorted(Settings().secret_values()) == sorted(
        ["s3cr%40t", "s3cr@t", "p" * 32, "mm-key", "bucket-secret"]
    )


def test_logs_are_json_in_production_and_text_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "text"
    set_env(monkeypatch, PRODUCTION)
    assert Settings().log_format == "json"
    monkeypatch.setenv("ODEATTS_LOG_FORMAT", "text")
    assert Settings().log_format == "text"
    monkeypatch.setenv("ODEATTS_LOG_FORMAT", "")  # as `.env.example` leaves it
    assert Settings().log_format == "json"
    monkeypatch.setenv("ODEATTS_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings()
