"""``admin.py users``: customers and their plans."""

from __future__ import annotations

import typer

from odeatts import accounts
from odeatts.cli.common import emit, run, settings, table

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Customers and their plans.")


@app.command("create")
def create(
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
    rows = [[field, data[field]] for field in ("id", "name", "email", "plan", "api_key")]
    emit(data, as_json, table("user created — the key is shown only once",
                              ["field", "value"], rows))
