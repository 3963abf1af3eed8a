"""The admin CLI (Typer): thin command groups over the package's own functions.

    admin.py db ...       schema migrations          (cli/db.py)
    admin.py users ...    customers and plans        (cli/users.py)
    admin.py voices ...   the voice catalogue        (cli/voices.py)
"""

from __future__ import annotations

import typer

from odeatts.cli import db, users, voices

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Operate OdeaTTS: database, users, keys, quotas, voices and usage.")
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(voices.app, name="voices")
