"""``admin.py usage``: who used how much, and what it cost us upstream.

    usage report [--from DATE] [--to DATE] [--user U] [--format table|csv|json] [--json]
                 [--output FILE]

The period is [from, to) in UTC by ``usage.created_at``; the default is this calendar
month. Clone previews made in the period (``voices.created_at``) are MiniMax's bill too:
JSON has them as ``clones``, the table as a last line; the per-user CSV leaves them
out. Totals are aggregated in SQL, ``BATCH_USERS`` users per query; a report over more
users than one batch shows a progress bar on stderr, never on stdout.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich import box
from rich.markup import escape
from rich.progress import Progress, TaskID
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
    settings,
    utc,
)
from odeatts.errors import AdminError
from odeatts.models import utcnow

__all__ = ["BATCH_USERS", "CSV_COLUMNS", "app"]

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, help="Usage reports.")

T = TypeVar("T")

BATCH_USERS = 500
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


class _ProgressBar:
    """``progress(done, total)`` for billing.usage_report: a bar once it is worth one."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None and done == 0 and total > BATCH_USERS:
            self._bar = Progress(console=err)
            self._task = self._bar.add_task("usage report", total=total)
            self._bar.start()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _json(report: billing.UsageReport) -> str:
    data = {
        "period": report.period(),
        "prices_usd_per_million_characters": {
            "turbo": report.prices.turbo_per_million,
            "hd": report.prices.hd_per_million,
        },
        "users": [line.to_dict() for line in report.lines],
        "totals": report.totals(),
        "clones": report.clones.to_dict() if report.clones is not None else None,
    }
    return json.dumps(data, indent=2) + "\n"


def _csv(report: billing.UsageReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    period = report.period()
    for line in report.lines:
        row = {**line.to_dict(), "period_from": period["from"], "period_to": period["to"]}
        writer.writerow(row)
    return buffer.getvalue()


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


def _write(report: billing.UsageReport, fmt: str, output: Path | None) -> None:
    if fmt == "table" and output is None:
        print_whole(_table(report))
        if report.clones is not None:
            say(_clone_line(report).rstrip("\n"), markup=False)
        return
    if fmt == "table":
        buffer = io.StringIO()
        print_whole(_table(report), buffer)
        text = buffer.getvalue() + _clone_line(report)
    else:
        text = _json(report) if fmt == "json" else _csv(report)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    err.print(f"wrote {len(report.lines)} user(s) to {output}", markup=False, highlight=False)


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
    config = settings()
    prices = billing.Prices(
        turbo_per_million=config.price_turbo_per_million_chars,
        hd_per_million=config.price_hd_per_million_chars,
    )
    bar = _ProgressBar()
    try:
        result = run(
            lambda s: billing.usage_report(
                s,
                start=start_at,
                end=end_at,
                prices=prices,
                user=user,
                batch_size=BATCH_USERS,
                progress=bar,
            )
        )
    finally:
        bar.close()
    _write(result, fmt, Path(output) if output else None)
