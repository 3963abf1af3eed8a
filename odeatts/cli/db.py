"""``admin.py db``: the schema.

db upgrade [REVISION] [--json]     migrate to REVISION (default: head)
"""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from odeatts import migrate
from odeatts.cli.common import JSON, OneLineErrors, emit, err, fail, settings

__all__ = ["app"]

app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, help="Database schema.")


def _revision(url: str) -> str | None:
    """The schema's current revision; None for a database that has none (or no file yet,
    which this does not create)."""
    parsed = make_url(url)
    if (
        parsed.drivername.startswith("sqlite")
        and parsed.database not in (None, "", ":memory:")
        and not Path(str(parsed.database)).exists()
    ):
        return None
    from alembic.runtime.migration import MigrationContext  # only here: see migrate.py

    engine = create_engine(migrate.sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Alembic revision; head is the latest."),
    as_json: bool = JSON,
) -> None:
    """Migrate the database named by DATABASE_URL (or the embedded SQLite) to REVISION."""
    from alembic.util import CommandError  # only here: see migrate.py

    config = settings()
    url = config.effective_database_url
    try:
        before = _revision(url)
        migrate.upgrade(url, revision)
        after = _revision(url)
    except CommandError as exc:  # an unknown revision, say
        fail(f"migration refused: {exc}")
    except (SQLAlchemyError, OSError) as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's SQL
        lines = str(cause).strip().splitlines() or [""]
        fail(f"migration failed: {type(exc).__name__}: {lines[0]}", code=3)
    where = (
        "DATABASE_URL"
        if config.database_url is not None
        else f"the embedded SQLite file {config.data_dir / 'odeatts.db'}"
    )
    data = {
        "database": make_url(url).render_as_string(hide_password=True),
        "target": revision,
        "from": before,
        "to": after,
        "changed": before != after,
    }
    emit(data, as_json)
    if not as_json:  # stderr, as it always was: stdout stays empty for scripts
        was = f"was {before or 'empty'}" if before != after else "already"
        err.print(
            f"database at {revision} ({after}; {was}): {where}", markup=False, highlight=False
        )
