"""``admin.py db``: the schema."""

from __future__ import annotations

import typer
from sqlalchemy.exc import SQLAlchemyError

from odeatts import migrate
from odeatts.cli.common import err, fail, settings

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Database schema.")


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the database named by DATABASE_URL (or the embedded SQLite) to REVISION."""
    try:
        migrate.upgrade(settings().effective_database_url, revision)
    except (SQLAlchemyError, OSError) as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc}", code=3)
    err.print(f"database at {revision}")
