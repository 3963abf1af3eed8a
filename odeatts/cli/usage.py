"""``admin.py usage``: who used how much, and what it cost us upstream.

    usage report [--from DATE] [--to DATE] [--user U] [--format table|csv|json] [--json]
                 [--output FILE]

The period is [from, to) in UTC by ``usage.created_at``; the default is this calendar
month. Clone previews made in the period (``voices.created_at``) are MiniMax's bill too:
JSON has them as ``clones``, the table as a last line; the per-user CSV leaves them
out. Totals are aggregated in SQL, one grouped query for the period; csv and json are
written a user at a time as the rows arrive (constant memory, however many users), and
``--output`` appears only once the report is whole.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from odeatts import billing
from odeatts.cli.common import (
    OneLineErrors,
    choice,
    err,
    fail,
    print_whole,
    run,
    say,
    seconds,
    utc,
)
from odeatts.cli.common import (
    prices as price_list,
)
from odeatts.db import Sessions
from odeatts.errors import AdminError
from odeatts.models import utcnow

__all__ = ["CSV_COLUMNS", "app"]

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, help="Usage reports.")

T = TypeVar("T")

FORMATS = ("table", "csv", "json")
CSV_COLUMNS = [
    "user_id",
    "email",
    "plan",
    "requests",
    "succeeded",
    "failed",
    "refused",
    "seconds",
    "billed_characters",
    "cost_usd",
    "period_from",
    "period_to",
]


def _checked(parse: Callable[[], T]) -> T:
    try:
        return parse()
    except AdminError as exc:
        fail(str(exc))


def _nested(value: Any, depth: int) -> str:
    """``value`` as ``json.dumps(whole, indent=2)`` writes it at ``depth``."""
    return json.dumps(value, indent=2).replace("\n", "\n" + "  " * depth)


async def _write_json(stream: billing.ReportStream, out: IO[str]) -> int:
    """The same text as ``json.dumps(report, indent=2)``, written a user at a time."""
    head = {
        "period": stream.period(),
        "prices_usd_per_million_characters": {
            "turbo": stream.prices.turbo_per_million,
            "hd": stream.prices.hd_per_million,
        },
    }
    out.write("{\n")
    for name, value in head.items():
        out.write(f"  {json.dumps(name)}: {_nested(value, 1)},\n")
    out.write('  "users": [')
    totals = billing.ReportTotals()
    async for line in stream.lines:
        out.write(("\n" if totals.users == 0 else ",\n") + "    " + _nested(line.to_dict(), 2))
        totals.add(line)
    out.write("\n  ],\n" if totals.users else "],\n")
    out.write(f'  "totals": {_nested(totals.to_dict(), 1)},\n')
    clones = stream.clones.to_dict() if stream.clones is not None else None
    out.write(f'  "clones": {_nested(clones, 1)}\n}}\n')
    return totals.users


async def _write_csv(stream: billing.ReportStream, out: IO[str]) -> int:
    """A line's columns are its ``to_dict`` in order, then the period (a plain writer:
    DictWriter's per-row dict cost a third of the report's Python at 100,000 users)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    period = stream.period()
    start, end = period["from"], period["to"]
    written = 0
    async for line in stream.lines:
        writer.writerow((*line.values(), start, end))
        written += 1
    return written


def _table(report: billing.UsageReport) -> Table:
    title = f"usage from {utc(report.start)} to {utc(report.end)} (end excluded)"
    result = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    result.add_column("id", justify="right")
    result.add_column("email", no_wrap=True)
    result.add_column("plan", no_wrap=True)
    for name in ("req", "ok", "fail", "refused", "seconds", "chars", "cost $"):
        result.add_column(name, justify="right", no_wrap=True)
    for x in report.lines:
        result.add_row(
            str(x.user_id),
            escape(x.email),
            x.plan_id,
            str(x.requests),
            str(x.succeeded),
            str(x.failed),
            str(x.refused),
            seconds(x.duration_ms / 1000),
            str(x.billed_characters),
            f"{x.cost_usd:.4f}",
        )
    t = report.totals()
    result.add_section()
    result.add_row(
        "",
        f"{t['users']} user(s)",
        "",
        str(t["requests"]),
        str(t["succeeded"]),
        str(t["failed"]),
        str(t["refused"]),
        seconds(t["seconds"]),
        str(t["billed_characters"]),
        f"{t['cost_usd']:.4f}",
    )
    return result


def _clone_line(report: billing.UsageReport) -> str:
    c = report.clones
    if c is None:
        return ""
    return (
        f"clone previews: {c.previews}, {c.preview_characters} characters, "
        f"${c.cost_usd:.4f} (not in the users' totals)\n"
    )


def _write_table(report: billing.UsageReport, output: Path | None) -> None:
    """A table is for people: every line is held to lay it out (use csv or json for
    thousands of users)."""
    if output is None:
        print_whole(_table(report))
        if report.clones is not None:
            say(_clone_line(report).rstrip("\n"), markup=False)
        return
    buffer = io.StringIO()
    print_whole(_table(report), buffer)
    _save(output, buffer.getvalue() + _clone_line(report))
    _wrote(len(report.lines), output)


def _save(output: Path, text: str) -> None:
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


def _wrote(users: int, output: Path) -> None:
    err.print(f"wrote {users} user(s) to {output}", markup=False, highlight=False)


def _open_partial(output: Path) -> tuple[Path, IO[str]]:
    """A file next to ``output``, renamed over it once the report is whole: a report
    that fails midway leaves no half file behind."""
    partial = output.with_name(f".{output.name}.partial")
    try:
        return partial, partial.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


def _stream(
    fmt: str,
    output: Path | None,
    start: dt.datetime,
    end: dt.datetime,
    prices: billing.Prices,
    user: str | None,
) -> None:
    """csv and json: each line is written as it is read, in constant memory."""
    write = _write_json if fmt == "json" else _write_csv

    async def report(sessions: Sessions, out: IO[str]) -> int:
        async with billing.usage_report_stream(
            sessions, start=start, end=end, prices=prices, user=user
        ) as stream:
            return await write(stream, out)

    if output is None:
        run(lambda s: report(s, sys.stdout))
        return
    partial, out = _open_partial(output)
    try:
        with out:
            users = run(lambda s: report(s, out))
        partial.replace(output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _wrote(users, output)


@app.command("report")
def report(
    start: str = typer.Option(
        None,
        "--from",
        metavar="DATE",
        help="First day or instant (UTC); default: this month's first.",
    ),
    end: str = typer.Option(
        None, "--to", metavar="DATE", help="End, excluded (UTC); default: next month's first."
    ),
    user: str = typer.Option(None, "--user", help="Only this user (id or email)."),
    fmt: str | None = choice("--format", FORMATS, "table (the default), csv or json."),
    as_json: bool = typer.Option(False, "--json", help="The same as --format json."),
    output: str = typer.Option(
        None, "--output", metavar="FILE", help="Write to FILE instead of stdout."
    ),
) -> None:
    """Per user: requests, outcomes, seconds, billed characters and upstream cost."""
    if as_json and fmt not in (None, "json"):
        fail(f"--json and --format {fmt} disagree; give one of them")
    fmt = "json" if as_json else fmt or "table"
    start_at, end_at = _checked(lambda: billing.parse_period(start, end, now=utcnow()))
    prices = price_list()
    target = Path(output) if output else None
    if fmt == "table":
        _write_table(
            run(
                lambda s: billing.usage_report(
                    s, start=start_at, end=end_at, prices=prices, user=user
                )
            ),
            target,
        )
    else:
        _stream(fmt, target, start_at, end_at, prices, user)
