"""The admin CLI (Typer): thin command groups over the package's own functions.

admin.py db ...       schema migrations          (cli/db.py)
admin.py users ...    customers and plans        (cli/users.py)
admin.py keys ...     API keys                   (cli/keys.py)
admin.py quota ...    seconds, credits, resets   (cli/quota.py)
admin.py voices ...   the voice catalogue        (cli/voices.py)
admin.py usage ...    usage reports              (cli/usage.py)
admin.py stats        the service at a glance    (cli/stats.py)
admin.py pronunciations ...  saved dictionaries  (cli/pronunciations.py)
admin.py cache ...    the audio cache            (cli/cache.py)
"""

from __future__ import annotations

import typer
from pydantic import ValidationError

from odeatts.cli import cache, db, keys, pronunciations, quota, stats, usage, users, voices
from odeatts.cli.common import OneLineErrors
from odeatts.config import Settings
from odeatts.logs import configure_logging

__all__ = ["app"]

app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help=(
        "Operate OdeaTTS: database, users, keys, quotas, voices, usage, pronunciations"
        " and the audio cache."
    ),
)


@app.callback()
def _main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show the package's warnings on stderr."
    ),
) -> None:
    """Library warnings (a MiniMax retry, say) would land above the one `error:` line an
    operator reads; they appear only when asked for, and always with secrets masked
    (the configured ones verbatim too, in the configured format)."""
    configure_logging(_settings_or_none(), level="INFO" if verbose else "CRITICAL")


def _settings_or_none() -> Settings | None:
    """Invalid settings are the command's to report, as its one ``error:`` line."""
    try:
        return Settings()
    except ValidationError:
        return None


app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(quota.app, name="quota")
app.add_typer(voices.app, name="voices")
app.add_typer(usage.app, name="usage")
app.add_typer(stats.app, name="stats")
app.add_typer(pronunciations.app, name="pronunciations")
app.add_typer(cache.app, name="cache")
