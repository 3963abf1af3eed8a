"""The admin CLI (Typer): a thin shell over odeatts.accounts and odeatts.migrate.

Tables for people, ``--json`` for machines; every operator mistake is one line on
stderr and exit code 2, an unreachable database exit code 3, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odeatts import accounts, migrate
from odeatts.config import Settings
from odeatts.db import make_engine, make_sessionmaker

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Operate OdeaTTS: database, users and voices.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
users_app = typer.Typer(no_args_is_help=True, help="Customers and their plans.")
voices_app = typer.Typer(no_args_is_help=True, help="The voice catalogue.")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(voices_app, name="voices")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one line per error, whatever the width


def fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail("invalid settings: " + "; ".join(e["msg"] for e in exc.errors()))
        raise  # unreachable; keeps type checkers honest


def run(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run one async operation against the configured database, mapping failures."""

    async def main() -> T:
        engine = make_engine(settings().effective_database_url, pool_size=2)
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except accounts.AdminError as exc:
        fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        fail(f"database unavailable ({type(exc).__name__}); is DATABASE_URL right and "
             "migrated (admin.py db upgrade)?", code=3)
    raise AssertionError("unreachable")


def emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif table is not None:
        out.print(table)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the database named by DATABASE_URL (or the embedded SQLite) to REVISION."""
    try:
        migrate.upgrade(settings().effective_database_url, revision)
    except (SQLAlchemyError, OSError) as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc}", code=3)
    err.print(f"database at {revision}")


@users_app.command("create")
def users_create(
    name: str = typer.Option(..., help="Customer's name."),
    email: str = typer.Option(..., help="Unique contact email."),
    plan: str = typer.Option("free", help="free, basic, pro or enterprise."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Create a customer and their first API key. The key is shown ONCE; only its hash is kept."""
    pepper = settings().pepper
    created = run(lambda s: accounts.create_user(s, name=name, email=email, plan=plan,
                                                 pepper=pepper))
    data = {**accounts.user_dict(created.user), "api_key": created.key.plain,
            "key_prefix": created.key.prefix}
    table = Table("field", "value", title="user created — the key is shown only once")
    for field in ("id", "name", "email", "plan", "api_key"):
        table.add_row(field, str(data[field]))
    emit(data, as_json, table)


@voices_app.command("add")
def voices_add(
    name: str = typer.Option(..., help="Friendly name callers use, e.g. nigerian-female."),
    minimax_id: str = typer.Option(..., "--minimax-id", help="MiniMax voice_id."),
    language: str = typer.Option(..., help="BCP-47 tag, e.g. en-NG."),
    gender: str = typer.Option(..., help="male, female or neutral."),
    description: str = typer.Option(None, help="Shown to callers."),
    language_boost: str = typer.Option(None, "--language-boost", help="MiniMax language_boost."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a voice under a friendly name."""
    voice = run(lambda s: accounts.add_voice(
        s, name=name, minimax_voice_id=minimax_id, language=language, gender=gender,
        description=description, language_boost=language_boost))
    data = {"name": voice.name, "minimax_voice_id": voice.minimax_voice_id,
            "language": voice.language, "gender": voice.gender, "kind": voice.kind}
    table = Table(*data.keys(), title="voice added")
    table.add_row(*(str(v) for v in data.values()))
    emit(data, as_json, table)
