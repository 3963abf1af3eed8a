"""``admin.py stats``: the service at a glance, from the usage ledger.

    stats [--since 1h|24h|7d] [--user U] [--top N] [--json] [--format table|json|prometheus]
          [--check [--max-error-rate R] [--max-account-errors N] [--clone-hours H]]

``--format prometheus`` writes Prometheus' text format for a textfile collector or a
Pushgateway (serverless workers have no stable scrape target). ``--check`` prints one
line per breach and exits 1 when there is any (0 and nothing when all is well), for the
hourly cron that runs ``quota reset-due``. The figures are stats.py's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from odeatts import stats
from odeatts.cli.common import (
    OneLineErrors,
    choice,
    display,
    emit,
    fail,
    prices,
    run,
    say,
    seconds,
    table,
    utc,
)
from odeatts.errors import AdminError

__all__ = ["app"]

app = typer.Typer(cls=OneLineErrors, help="The service at a glance, from the usage ledger.")

FORMATS = ("table", "json", "prometheus")


def _since(text: str) -> dt.timedelta:
    try:
        return stats.parse_since(text)
    except AdminError as exc:
        fail(str(exc))


@app.callback(invoke_without_command=True)
def show(
    since: str = typer.Option("24h", "--since", help="The window: 1h, 24h, 7d (m, h or d)."),
    user: str | None = typer.Option(None, "--user", help="Only this user's jobs (id or email)."),
    top: int = typer.Option(5, "--top", min=1, max=100, help="How many busiest users."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    fmt: str | None = choice("--format", FORMATS, "How to print (default table)."),
    check: bool = typer.Option(False, "--check", help="Print breaches only; exit 1 if any."),
    max_error_rate: float = typer.Option(
        0.05, "--max-error-rate", min=0.0, max=1.0, help="Page above this error rate."
    ),
    max_account_errors: int = typer.Option(
        0, "--max-account-errors", min=0, help="Page above this many MiniMax account errors."
    ),
    clone_hours: float = typer.Option(
        24.0, "--clone-hours", min=0.0, help="Page for a clone expiring within this."
    ),
) -> None:
    """Jobs, refusals, times, audio, cost, busiest users, upsells and expiring clones."""
    if as_json and fmt not in (None, "json"):
        fail(f"--json and --format {fmt} disagree; give one of them")
    window = _since(since)
    found = run(lambda s: stats.collect(s, since=window, prices=prices(), user=user, top=top))
    if check:
        thresholds = stats.Thresholds(
            error_rate=max_error_rate,
            account_errors=max_account_errors + 1,
            clone_within=dt.timedelta(hours=clone_hours),
        )
        _check(stats.breaches(found, thresholds))
        return
    fmt = "json" if as_json else fmt or "table"
    if fmt == "prometheus":
        typer.echo(stats.render_prometheus(found, window=since.strip()), nl=False)
        return
    emit(found.to_dict(), fmt == "json")
    if fmt == "table":
        _tables(found)


def _check(lines: list[str]) -> None:
    for line in lines:
        say(line, markup=False)
    if lines:
        raise typer.Exit(1)


def _tables(found: stats.Stats) -> None:
    data = found.to_dict()
    who = "all users" if found.user_id is None else f"user {found.user_id}"
    say(f"{utc(found.start)} → {utc(found.end)}, {who}: {found.jobs} jobs", markup=False)
    display(_jobs_table(found))
    display(_delivery_table(found, data))
    if found.busiest:
        display(_users_table("busiest users", found.busiest, "seconds"))
    if found.near_quota:
        display(_users_table("above 80% of their quota", found.near_quota, "share"))
    for clone in found.expiring_clones:
        say(f"clone {clone['name']} expires {clone['expires_at']} unless used", markup=False)


def _jobs_table(found: stats.Stats) -> Table:
    rates = found.refusal_rates()
    rows: list[list[Any]] = [[f"outcome {k}", n, ""] for k, n in found.outcomes.items()]
    rows += [[f"error {k}", n, ""] for k, n in found.errors.items()]
    rows += [[f"refused: {k}", n, f"{rates[k]:.1%}"] for k, n in found.refusals.items()]
    rows += [
        ["error rate (our side or MiniMax's)", found.service_errors, f"{found.error_rate:.1%}"],
        ["MiniMax account errors", found.account_errors, ""],
    ]
    return table("jobs", ["what", "jobs", "share"], rows)


def _delivery_table(found: stats.Stats, data: dict[str, Any]) -> Table:
    rows: list[list[Any]] = [
        [f"{name} ms p50 / p95 / p99", " / ".join(_ms(v) for v in values.values())]
        for name, values in data["times_ms"].items()
    ]
    rows += [
        ["audio delivered", f"{seconds(found.audio_ms / 1000)} s"],
        ["billed characters", found.billed_characters],
        ["MiniMax cost", f"${found.cost_usd:.4f}"],
        *[[f"plan {p}", f"{seconds(v)} s"] for p, v in found.seconds_by_plan.items()],
    ]
    return table("delivered", ["figure", "value"], rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _users_table(title: str, users: list[dict[str, Any]], figure: str) -> Table:
    if figure == "share":
        rows = [
            [
                u["user_id"],
                u["email"],
                u["plan"],
                f"{seconds(u['used_seconds'])} / {seconds(u['quota_seconds'])} s",
                f"{u['share']:.0%}",
            ]
            for u in users
        ]
        return table(title, ["id", "email", "plan", "used / quota", "share"], rows)
    rows = [[u["user_id"], u["email"], u["plan"], u["jobs"], seconds(u["seconds"])] for u in users]
    return table(title, ["id", "email", "plan", "jobs", "seconds"], rows)
