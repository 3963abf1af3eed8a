"""Driving the admin CLI in tests: the operator's environment and a runner for it."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer.testing
from typer._click.core import Command
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner, Result

from odeatts.cli import app
from odeatts.config import Settings

__all__ = ["Invoke", "cli_env", "commands", "make_invoke"]

Invoke = Callable[..., Result]

# typer's CliRunner builds the whole click command tree from the app's signatures on every
# invoke (about 50 ms: every annotation of every command evaluated again); the admin
# process does it once. Built once per test process too, as in production.
assert callable(typer.testing._get_command), "typer moved it: update this"  # type: ignore[attr-defined]
typer.testing._get_command = functools.cache(get_command)  # type: ignore[attr-defined]


def cli_env(settings: Settings) -> dict[str, str]:
    """The worker's own configuration, as an operator's shell would export it."""
    assert settings.database_url and settings.key_pepper
    return {
        "DATABASE_URL": settings.effective_database_url,
        "ODEATTS_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "ODEATTS_DATA_DIR": str(settings.data_dir),
        "MINIMAX_BASE_URL": settings.minimax_base_url,
        "MINIMAX_API_KEY": "emulator-key",
    }


def make_invoke(settings: Settings) -> Invoke:
    """``invoke("users", "show", ...)`` runs ``admin.py`` in-process with that environment."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env or cli_env(settings))

    return run


def commands() -> list[tuple[list[str], Command]]:
    """Every admin command as ``(["users", "show"], command)``: what a rule for all of them
    (``--json``, ``[required]`` in ``--help``) walks, so a new command cannot slip past."""
    root = get_command(app)
    assert isinstance(root, TyperGroup)
    found: list[tuple[list[str], Command]] = []
    for group_name, group in sorted(root.commands.items()):
        assert isinstance(group, TyperGroup), group_name
        found += [([group_name, name], command) for name, command in sorted(group.commands.items())]
    return found
