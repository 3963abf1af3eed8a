"""What every admin command shares: settings, running async work, output, failures.

Tables for people, ``--json`` for machines; every operator mistake is one line on
stderr and exit code 2, an unreachable database exit code 3, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from typer._click.core import Context
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from odeatts.config import Settings
from odeatts.connections import build_minimax
from odeatts.db import Sessions, make_engine, make_sessionmaker
from odeatts.errors import AdminError, OdeaError
from odeatts.minimax import MiniMaxClient

__all__ = [
    "OneLineErrors",
    "Sessions",
    "emit",
    "err",
    "fail",
    "minimax",
    "out",
    "run",
    "settings",
    "table",
]

T = TypeVar("T")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one line per error, whatever the width


class OneLineErrors(TyperGroup):
    """A mistyped option is an operator mistake too: one ``error:`` line and exit 2,
    not click's usage panel (which the top-level app would otherwise print)."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            path = (exc.ctx or ctx).command_path
            fail(f"{exc.format_message()} (see: {path} --help)")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail("invalid settings: " + "; ".join(e["msg"] for e in exc.errors()))


def run(work: Callable[[Sessions], Awaitable[T]]) -> T:
    """Run one async operation against the configured database, mapping failures.

    AdminError is the operator's mistake (exit 2); an OdeaError from MiniMax is shown
    by its code and message (exit 2 for the caller-ish kinds, 3 for unavailability).
    """

    async def main() -> T:
        engine = make_engine(settings().effective_database_url, pool_size=2)
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except AdminError as exc:
        fail(str(exc))
    except OdeaError as exc:
        fail(f"{exc.code}: {exc.message}", code=3 if exc.retryable else 2)
    except (SQLAlchemyError, ConnectionError) as exc:
        fail(f"database unavailable ({type(exc).__name__}); is DATABASE_URL right and "
             "migrated (admin.py db upgrade)?", code=3)


@asynccontextmanager
async def minimax() -> AsyncIterator[MiniMaxClient]:
    """A MiniMax client from the same settings as the worker (voices, cloning)."""
    client = build_minimax(settings())
    try:
        yield client
    finally:
        await client.aclose()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    result = Table(*columns, title=title)
    for row in rows:
        # Names and labels are operators' text: never rich markup.
        result.add_row(*("" if v is None else escape(str(v)) for v in row))
    return result


def emit(data: Any, as_json: bool, human: Table | str | None = None) -> None:
    """JSON on stdout for machines, or a table/line for people."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif human is not None:
        out.print(human)
