"""``admin.py users``: customers, their plans, limits and whether they may use the API.

    users create     --name N --email E --plan P     a customer and their first key
    users show       --user U                        plan, limits, seconds, cycle, keys
    users list       [--plan P] [--active/--inactive]
    users set-plan   --user U --plan P               effective on the user's next job
    users set-limits --user U [--monthly-seconds N] [--rpm N] [--streams N] | --clear
    users set-voice  --user U --voice NAME | --clear    the voice of jobs that name none
    users deactivate --user U / users activate --user U

``--user`` is an id or an email (case-insensitive). Every command takes ``--json``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from odeatts import accounts
from odeatts.cli.common import (
    JSON,
    OneLineErrors,
    display,
    emit,
    fail,
    key_table,
    run,
    say,
    seconds,
    settings,
    table,
    utc,
)

__all__ = ["app"]

app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, help="Customers: plans, limits, activation."
)

USER = typer.Option(..., "--user", help="User id or email.")


def _who(user: Any) -> str:
    return f"user {user.id} {escape(user.email)}"


def _limit(limit: accounts.Limit) -> str:
    return f"{limit.value} ({limit.source})"


def _limits_table(title: str, change: accounts.LimitsChange) -> Table:
    rows = [
        [name, _limit(change.previous[name]), _limit(change.limits[name])]
        for name in accounts.LIMIT_NAMES
    ]
    return table(title, ["limit", "before", "now"], rows)


@app.command("create")
def create(
    name: str = typer.Option(..., help="Customer's name."),
    email: str = typer.Option(..., help="Unique contact email."),
    plan: str = typer.Option("free", help="free, basic, pro or enterprise."),
    as_json: bool = JSON,
) -> None:
    """Create a customer and their first API key. The key is shown ONCE; only its hash is kept."""
    pepper = settings().pepper
    created = run(
        lambda s: accounts.create_user(s, name=name, email=email, plan=plan, pepper=pepper)
    )
    data = {
        **accounts.user_dict(created.user),
        "api_key": created.key.plain,
        "key_prefix": created.key.prefix,
    }
    rows = [[field, str(data[field])] for field in ("id", "name", "email", "plan", "api_key")]
    emit(
        data, as_json, table("user created — the key is shown only once", ["field", "value"], rows)
    )


def _user_table(view: accounts.UserView) -> Table:
    user, q = view.user, accounts.user_view_dict(view)["quota"]
    assert isinstance(q, dict)
    rows: list[list[Any]] = [
        ["id", user.id],
        ["name", user.name],
        ["email", user.email],
        ["plan", f"{view.plan.id} ({view.plan.name})"],
        ["active", "yes" if user.active else "NO — jobs are refused"],
        ["default voice", user.default_voice or "none (jobs must name a voice)"],
        *[[name.replace("_", " "), _limit(view.limits[name])] for name in accounts.LIMIT_NAMES],
        [
            "seconds",
            f"{seconds(q['total_seconds'])} = {q['limit_seconds']} + credit "
            f"{seconds(q['credit_seconds'])}",
        ],
        [
            "used",
            f"{seconds(q['used_seconds'])} s (+ {seconds(q['reserved_seconds'])} s reserved now)",
        ],
        ["remaining", f"{seconds(q['remaining_seconds'])} s"],
        ["cycle", f"{utc(user.cycle_start)} → {utc(user.cycle_end)}"],
    ]
    return table(_who(user), ["field", "value"], rows)


@app.command("show")
def show(user: str = USER, as_json: bool = JSON) -> None:
    """One user: plan, effective limits (override or plan), seconds used/left, cycle, keys."""
    ttl = dt.timedelta(seconds=settings().lease_ttl_seconds)
    view = run(lambda s: accounts.show_user(s, user=user, lease_ttl=ttl))
    if as_json:
        emit(accounts.user_view_dict(view), True)
        return
    display(_user_table(view))
    display(key_table("keys", view.keys))


@app.command("list")
def list_(
    plan: str | None = typer.Option(None, "--plan", help="Only users on this plan."),
    active: bool | None = typer.Option(None, "--active/--inactive", help="Only active/inactive."),
    as_json: bool = JSON,
) -> None:
    """Users, oldest first, with their plan, seconds used and working keys."""
    rows = run(lambda s: accounts.list_users(s, plan=plan, active=active))
    data = {
        "users": [
            {
                "id": r.user.id,
                "name": r.user.name,
                "email": r.user.email,
                "plan": r.user.plan_id,
                "active": r.user.active,
                "used_seconds": r.user.used_ms / 1000,
                "monthly_seconds": r.limits["monthly_seconds"].value,
                "credit_seconds": r.user.credit_ms / 1000,
                "active_keys": r.active_keys,
                "created_at": r.user.created_at.isoformat(),
            }
            for r in rows
        ]
    }
    human = table(
        f"{len(rows)} users",
        ["id", "email", "name", "plan", "active", "used s", "limit s", "keys"],
        [
            [
                u["id"],
                str(u["email"]),
                str(u["name"]),
                u["plan"],
                "yes" if u["active"] else "no",
                seconds(r.user.used_ms / 1000),
                u["monthly_seconds"],
                u["active_keys"],
            ]
            for r, u in zip(rows, data["users"], strict=True)
        ],
    )
    human.columns[1].no_wrap = True  # the email is what operators pass to --user
    emit(data, as_json, human)


@app.command("set-plan")
def set_plan(
    user: str = USER,
    plan: str = typer.Option(..., "--plan", help="The new plan."),
    as_json: bool = JSON,
) -> None:
    """Move a user to another plan; it applies from their next job."""
    change = run(lambda s: accounts.set_plan(s, user=user, plan=plan))
    data = {
        "id": change.user.id,
        "email": change.user.email,
        "plan": change.user.plan_id,
        "previous_plan": change.previous,
        "changed": change.changed,
        "limits": accounts.limits_dict(change.limits),
    }
    if as_json:
        emit(data, True)
        return
    who = _who(change.user)
    say(
        f"{who}: plan {change.previous} → {change.user.plan_id}, from the next job"
        if change.changed
        else f"{who} is already on plan {change.user.plan_id}"
    )
    kept = [n for n, limit in change.limits.items() if limit.source == "override"]
    if kept:
        say(
            f"note: overrides still apply ({', '.join(kept)}); "
            "`users set-limits --clear` removes them"
        )


@app.command("set-limits")
def set_limits(
    user: str = USER,
    monthly_seconds: int | None = typer.Option(
        None, "--monthly-seconds", help="Seconds per cycle."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    streams: int | None = typer.Option(None, "--streams", help="Concurrent jobs."),
    clear: bool = typer.Option(False, "--clear", help="Remove every override (plan's again)."),
    as_json: bool = JSON,
) -> None:
    """Per-user overrides of the plan's limits (enterprise deals); from the next job."""
    change = run(
        lambda s: accounts.set_limits(
            s, user=user, monthly_seconds=monthly_seconds, rpm=rpm, streams=streams, clear=clear
        )
    )
    data = {
        "id": change.user.id,
        "email": change.user.email,
        "plan": change.user.plan_id,
        "previous": accounts.limits_dict(change.previous),
        "limits": accounts.limits_dict(change.limits),
    }
    emit(data, as_json, _limits_table(f"limits of {_who(change.user)}", change))


@app.command("set-voice")
def set_voice(
    user: str = USER,
    voice: str | None = typer.Option(None, "--voice", help="An active catalogue voice."),
    clear: bool = typer.Option(False, "--clear", help="Remove the default voice."),
    as_json: bool = JSON,
) -> None:
    """The voice a speech job without `voice` uses; from the user's next job."""
    if clear == (voice is not None):
        fail("give --voice NAME or --clear")
    change = run(lambda s: accounts.set_default_voice(s, user=user, voice=voice))
    found = change.user
    data = {
        "id": found.id,
        "email": found.email,
        "default_voice": found.default_voice,
        "previous_default_voice": change.previous,
        "changed": change.changed,
    }
    now = found.default_voice or "none: jobs must name a voice"
    emit(data, as_json, f"{_who(found)}: default voice {change.previous or 'none'} → {now}")


def _set_active(user: str, active: bool, as_json: bool) -> None:
    found, changed = run(lambda s: accounts.set_active(s, user=user, active=active))
    data = {"id": found.id, "email": found.email, "active": found.active, "changed": changed}
    word = "activated" if active else "deactivated: every job with their keys is refused"
    emit(
        data,
        as_json,
        f"{_who(found)} {word}"
        if changed
        else f"{_who(found)} was already {'active' if active else 'inactive'}",
    )


@app.command("deactivate")
def deactivate(user: str = USER, as_json: bool = JSON) -> None:
    """Refuse all of a user's jobs (unauthorized) from now on; keys and usage are kept."""
    _set_active(user, False, as_json)


@app.command("activate")
def activate(user: str = USER, as_json: bool = JSON) -> None:
    """Let a deactivated user's keys work again."""
    _set_active(user, True, as_json)
