"""``admin.py keys``: API keys. A new key is printed once; only its HMAC hash is kept.

    keys issue  --user U [--label L]          another key for a user
    keys list   --user U                      prefixes, labels, last use, state
    keys revoke --prefix odea_XXXXXXXX | --id N
    keys rotate --prefix P | --id N [--grace SECONDS]

Rotation: the new key gets the old label + " (rotated)"; the old key is revoked at
once (grace 0, the default) or expires after ``--grace`` seconds (at most 30 days).
"""

from __future__ import annotations

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
    key_table,
    run,
    settings,
    table,
    utc,
)

__all__ = ["app"]


app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, help="API keys: issue, list, revoke, rotate."
)

USER = typer.Option(..., "--user", help="User id or email.")
# One of the two names the key; neither alone is required, so each says so.
PREFIX = typer.Option(
    None, "--prefix", help="The key's public prefix, odea_XXXXXXXX (this or --id is required)."
)
KEY_ID = typer.Option(None, "--id", help="The key's id, from keys list (this or --prefix).")


def _issued(issued: accounts.IssuedKey) -> dict[str, Any]:
    return {**accounts.key_dict(issued.key), "email": issued.user.email, "api_key": issued.plain}


def _issued_table(title: str, data: dict[str, Any], extra: list[list[Any]]) -> Table:
    rows = [
        ["user", f"{data['user_id']} {data['email']}"],
        ["key id", data["id"]],
        ["prefix", data["prefix"]],
        ["label", data["label"] or ""],
        *extra,
        ["api_key", data["api_key"]],
    ]
    result = table(title, ["field", "value"], rows)
    result.columns[1].no_wrap = True  # the key must print whole, or it is lost
    return result


@app.command("issue")
def issue(
    user: str = USER,
    label: str | None = typer.Option(None, "--label", help="What it is for (≤ 100 chars)."),
    as_json: bool = JSON,
) -> None:
    """Issue another key for a user. The key is shown ONCE; only its hash is kept."""
    pepper = settings().pepper
    issued = run(lambda s: accounts.issue_key(s, user=user, label=label, pepper=pepper))
    data = _issued(issued)
    note = [] if issued.user.active else [["note", "user is inactive: `users activate` first"]]
    emit(data, as_json, _issued_table("key issued — shown only once", data, note))


@app.command("list")
def list_(user: str = USER, as_json: bool = JSON) -> None:
    """A user's keys: prefix, label, created, last used, state. Never the key or its hash."""
    found, keys = run(lambda s: accounts.list_keys(s, user=user))
    data = {"user_id": found.id, "email": found.email, "keys": [accounts.key_dict(k) for k in keys]}
    emit(data, as_json, key_table(f"keys of user {found.id} {escape(found.email)}", keys))


@app.command("revoke")
def revoke(prefix: str | None = PREFIX, key_id: int | None = KEY_ID, as_json: bool = JSON) -> None:
    """Revoke a key now: its next job is unauthorized. Revoking again changes nothing."""
    done = run(lambda s: accounts.revoke_key(s, prefix=prefix, key_id=key_id))
    key = done.key
    data = {**accounts.key_dict(key), "already_revoked": done.already}
    verb = "was already revoked at" if done.already else "revoked at"
    emit(
        data,
        as_json,
        f"key {escape(key.prefix)} (id {key.id}, user {key.user_id}) {verb} {utc(key.revoked_at)}",
    )


@app.command("rotate")
def rotate(
    prefix: str | None = PREFIX,
    key_id: int | None = KEY_ID,
    grace: int = typer.Option(0, "--grace", help="Seconds the old key keeps working."),
    as_json: bool = JSON,
) -> None:
    """Replace a key: a new one (shown ONCE); the old one stops now or after --grace seconds."""
    pepper = settings().pepper
    done = run(
        lambda s: accounts.rotate_key(
            s, prefix=prefix, key_id=key_id, grace_seconds=grace, pepper=pepper
        )
    )
    old = done.old
    new = _issued(done.new)
    data = {"old": accounts.key_dict(old), "new": new, "grace_seconds": grace}
    until = f"works until {utc(old.expires_at)}" if old.state == "expiring" else "revoked now"
    if as_json:
        emit(data, True)
        return
    display(
        _issued_table(
            "key rotated — the new key is shown only once",
            new,
            [["old key", f"{old.prefix} (id {old.id}): {until}"]],
        )
    )
