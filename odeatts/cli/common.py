"""What every admin command shares: settings, running async work, output, failures.

Tables for people, ``--json`` for machines; every operator mistake is one line on
stderr and exit code 2, an unreachable database exit code 3, never a traceback.

This is the only module the command modules import from one another: anything two of
them need lives here, so a command group can be read (or removed) on its own.

Output rules, the same for every command:

- On a terminal a table fits the window. When stdout is a file or a pipe (a cron log,
  ``| grep``), nothing is ever cut or wrapped: the title is a line of its own, then the
  table at its natural width, so each record is one line, values whole.
- Audio amounts are seconds with one decimal (``JSON`` keeps the exact milliseconds);
  limits are the whole numbers they are set to. Times are ISO 8601 in UTC,
  ``2026-11-24T23:09:43Z``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import IO, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

# typer (pinned) vendors click; its usage errors are these classes, not click's.
from typer._click.core import Context
from typer._click.exceptions import MissingParameter, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from odeatts import accounts, billing
from odeatts.config import Settings
from odeatts.connections import build_minimax
from odeatts.db import Sessions, make_engine, make_sessionmaker
from odeatts.errors import AdminError, OdeaError
from odeatts.minimax import MiniMaxClient

__all__ = [
    "JSON",
    "UPGRADE_HINT",
    "OneLineErrors",
    "Sessions",
    "choice",
    "display",
    "emit",
    "err",
    "fail",
    "key_table",
    "language_option",
    "minimax",
    "out",
    "piped",
    "prices",
    "print_whole",
    "redis_client",
    "run",
    "say",
    "seconds",
    "settings",
    "table",
    "utc",
]

T = TypeVar("T")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one line per error, whatever the width

JSON = typer.Option(False, "--json", help="Print JSON for machines (stdout holds only JSON).")
UPGRADE_HINT = "run scripts/admin db upgrade"

# BCP-47 in the shape the catalogue stores (odeatts.catalogue checks it the same way).
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}")


class OneLineErrors(TyperGroup):
    """A mistyped option is an operator mistake too: one ``error:`` line and exit 2,
    not click's usage panel (which the top-level app would otherwise print).

    Required options are declared required (``...``), so ``--help`` marks them
    ``[required]``; leaving one out reads ``error: --user is required``."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Context | None = None, **extra: Any
    ) -> Context:
        """The top level's own options (``admin.py --bogus``) are parsed here, outside
        ``invoke``; a group's are parsed inside its parent's ``invoke``."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            fail(f"{exc.format_message()} (see: {info_name or 'admin.py'} --help)")

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except MissingParameter as exc:
            path = (exc.ctx or ctx).command_path
            name = exc.param.opts[0] if exc.param is not None and exc.param.opts else "an option"
            fail(f"{name} is required (see: {path} --help)")
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


def redis_client(config: Settings) -> Redis | None:
    """The deployment's Redis for one command (close it); None: the embedded default,
    which has none."""
    if not config.plain_redis_url:
        return None
    return Redis.from_url(config.plain_redis_url, socket_timeout=10, socket_connect_timeout=10)


# --- options whose values are a fixed choice ------------------------------------------------


def choice(
    names: str, values: Sequence[str], help: str, default: Any = None, metavar: str | None = None
) -> Any:
    """An option that takes one of ``values`` (``default=...``: a required one).

    ``--help`` lists the values; anything else is one ``error:`` line naming them, where a
    filter would otherwise match nothing and look like "no such voices"."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in values:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(values)}")
        return value

    return typer.Option(
        default, names, metavar=metavar or "|".join(values), help=help, callback=check
    )


def language_option(help: str, default: Any = None) -> Any:
    """``--language``: a BCP-47 tag such as en-NG (``default=...``: required), checked
    before anything is read or asked of MiniMax."""

    def check(value: str | None) -> str | None:
        if value is not None and (len(value) > 16 or not _LANGUAGE.fullmatch(value)):
            raise typer.BadParameter(f"{value!r} is not a BCP-47 tag such as en-NG")
        return value

    return typer.Option(default, "--language", metavar="TAG", help=help, callback=check)


# --- running one operation against the database --------------------------------------------


def _where(config: Settings) -> str:
    if config.database_url is not None:
        return "DATABASE_URL"
    return f"the embedded SQLite file {config.data_dir / 'odeatts.db'}"


def _unmigrated(exc: SQLAlchemyError) -> bool:
    """A missing table or column: a database nobody ran the migrations on (or an old one)."""
    cause = getattr(exc, "orig", None)
    if getattr(cause, "sqlstate", None) in ("42P01", "42703"):  # undefined table / column
        return True
    text = str(cause if cause is not None else exc)
    return "no such table" in text or "no such column" in text


class _Deadline(Exception):
    """The command's deadline passed with the database (or MiniMax) still silent."""


def _bounded(main: Coroutine[Any, Any, T], seconds: float) -> T:
    """``asyncio.run(main)`` that returns by the deadline even when a peer is silent.

    asyncio.run would await the cancelled work, and psycopg's cancellation itself
    waits on the silent server; here the work gets one second to let go, then is
    abandoned: the process is ending, and the OS closes its sockets."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(main)
    try:
        loop.run_until_complete(asyncio.wait({task}, timeout=seconds))
        if task.done():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            return task.result()
        task.cancel()
        loop.run_until_complete(asyncio.wait({task}, timeout=1.0))
        loop.set_exception_handler(lambda _loop, _context: None)  # "destroyed but pending"
        raise _Deadline
    finally:
        loop.close()


def _busy(exc: SQLAlchemyError) -> str | None:
    """Why the server gave up on a statement: a lock it waited for, or the deadline."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if state == "55P03":  # lock_not_available: lock_timeout
        return "rows this command needs stayed locked by another session"
    if state == "57014":  # query_canceled: statement_timeout
        return "a statement ran past the command's deadline"
    return None


def run(work: Callable[[Sessions], Awaitable[T]]) -> T:
    """Run one async operation against the configured database, mapping failures.

    AdminError is the operator's mistake (exit 2); an OdeaError from MiniMax is shown
    by its code and message (exit 2 for the caller-ish kinds, 3 for unavailability).
    The whole command has a deadline (ODEATTS_ADMIN_TIMEOUT_SECONDS, also the server's
    statement_timeout) and waits for a row lock at most ODEATTS_ADMIN_LOCK_TIMEOUT_SECONDS:
    a stalled database is exit 3 with one line, never a hung cron.
    """
    config = settings()
    deadline = config.admin_timeout_seconds

    async def main() -> T:
        engine = make_engine(
            config.effective_database_url,
            pool_size=2,
            timeout_seconds=deadline,
            lock_timeout_seconds=config.admin_lock_timeout_seconds,
        )
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return _bounded(main(), deadline)
    except (_Deadline, AdminError, OdeaError, SQLAlchemyError, ConnectionError) as exc:
        message, code = _explain(exc, config)
        fail(message, code=code)


def _explain(exc: Exception, config: Settings) -> tuple[str, int]:
    """The one line (and exit code) an operator gets for a command that failed."""
    unavailable = f"database unavailable ({type(exc).__name__}); is {_where(config)} right?"
    if isinstance(exc, _Deadline):
        return (
            f"database unavailable: no answer within {config.admin_timeout_seconds:g} s "
            f"(ODEATTS_ADMIN_TIMEOUT_SECONDS); is {_where(config)} right?",
            3,
        )
    if isinstance(exc, OdeaError):
        return f"{exc.code}: {exc.message}", 3 if exc.retryable else 2
    if isinstance(exc, SQLAlchemyError):
        if _unmigrated(exc):
            return f"{_where(config)} has no OdeaTTS schema, or an old one: {UPGRADE_HINT}", 3
        if (why := _busy(exc)) is not None:
            return f"database busy: {why}; run the command again", 3
        return unavailable, 3
    if isinstance(exc, ConnectionError):
        return unavailable, 3
    return str(exc), 2  # AdminError: the operator's mistake


@asynccontextmanager
async def minimax() -> AsyncIterator[MiniMaxClient]:
    """A MiniMax client from the same settings as the worker (voices, cloning)."""
    client = build_minimax(settings())
    try:
        yield client
    finally:
        await client.aclose()


# --- units ---------------------------------------------------------------------------------


def prices() -> billing.Prices:
    """What MiniMax charges us, from the settings (the usage report and stats)."""
    config = settings()
    return billing.Prices(
        turbo_per_million=config.price_turbo_per_million_chars,
        hd_per_million=config.price_hd_per_million_chars,
    )


def seconds(value: float) -> str:
    """An amount of audio, in seconds: one decimal in every view (JSON has the exact ms)."""
    return f"{value:.1f}"


def utc(moment: dt.datetime | None) -> str:
    """A time in every view: ISO 8601 in UTC to the second, ``2026-11-24T23:09:43Z``."""
    if moment is None:
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- output --------------------------------------------------------------------------------


def piped() -> bool:
    """Whether stdout is a file or a pipe rather than a terminal (asked at each print:
    tests and scripts swap ``sys.stdout``)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return not (callable(isatty) and isatty())


def _cell(value: Any) -> str:
    """Operators' text is data, never rich markup; a line break would split a record."""
    text = "" if value is None else str(value)
    return escape(text.replace("\r", "\\r").replace("\n", "\\n"))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """``title`` may hold markup (escape operators' text in it); cells never do."""
    result = Table(*columns, title=title)
    for row in rows:
        result.add_row(*(_cell(v) for v in row))
    return result


def _natural_width(human: Table) -> int:
    return Measurement.get(out, out.options.update(max_width=100_000), human).maximum


def _print_flat(human: Table, file: IO[str] | None) -> None:
    """The title as a line of its own, then the table at its natural width: nothing wraps."""
    title, human.title = human.title, None
    console = Console(file=file, width=max(_natural_width(human), 1), soft_wrap=True)
    try:
        if title:
            console.print(
                title if isinstance(title, Text) else Text.from_markup(title), highlight=False
            )
        console.print(human)
    finally:
        human.title = title


def print_whole(human: Table, file: IO[str] | None = None) -> None:
    """Print at the table's natural width: a report never loses digits to a narrow terminal."""
    if file is not None or piped():
        _print_flat(human, file)
        return
    Console(width=max(_natural_width(human), out.width)).print(human)


def display(human: Table | str) -> None:
    """A table or a line for people: fitted to a terminal, whole when piped."""
    if isinstance(human, str):
        say(human)
    elif piped():
        _print_flat(human, None)
    else:
        out.print(human)


def say(line: str, *, markup: bool = True) -> None:
    """One line for people; piped, it is never wrapped."""
    out.print(line, markup=markup, highlight=False, soft_wrap=piped())


def emit(data: Any, as_json: bool, human: Table | str | None = None) -> None:
    """JSON on stdout for machines, or a table/line for people."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif human is not None:
        display(human)


# --- views two command groups share ---------------------------------------------------------


def _key_state(key: accounts.KeyView) -> str:
    if key.state in ("expiring", "expired") and key.expires_at is not None:
        return ("expires " if key.state == "expiring" else "expired ") + utc(key.expires_at)
    return key.state


def key_table(title: str, keys: list[accounts.KeyView]) -> Table:
    """A user's keys (``keys list``, ``users show``): never the key or its hash."""
    rows = [
        [
            k.id,
            k.prefix,
            k.label or "",
            utc(k.created_at),
            utc(k.last_used_at) or "never",
            _key_state(k),
        ]
        for k in keys
    ]
    result = table(title, ["id", "prefix", "label", "created", "last used", "state"], rows)
    result.columns[1].no_wrap = True  # a prefix cut short names no key
    return result
