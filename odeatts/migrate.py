"""Schema migrations (Alembic), callable from the admin CLI and from tests.

Migrations run on a synchronous engine: Alembic is synchronous, and this keeps
them usable from inside a running event loop (tests) as well as from a script.
Alembic is imported by the functions that use it: every admin command imports this
module, and only ``db upgrade`` migrates (Alembic costs about 0.8 s to import).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["alembic_config", "downgrade", "sync_url", "upgrade"]

_HERE = Path(__file__).parent


def sync_url(url: str) -> str:
    """The same database through a synchronous driver."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    # Percent signs in passwords would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
