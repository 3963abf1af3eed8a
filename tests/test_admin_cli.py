"""The admin CLI as an operator meets it: exit codes, one-line errors, keys shown once.

Commands run through Typer's CliRunner against the same database as a real worker, so
a key or voice made by the CLI is proved by a speech job, not by reading it back.
The CLI calls ``asyncio.run``; async tests therefore run it in a thread.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner, Result

from minimax_emulator import Emulator
from odeatts.cli import app
from odeatts.config import Settings
from odeatts.keys import hash_key
from odeatts.migrate import sync_url
from odeatts.models import ApiKey, Plan, Voice
from odeatts.worker import Worker
from tests.conftest import JobRunner, backend_independent
from tests.support.cli import Invoke, cli_env
from tests.test_migrations import empty_database

ROOT = Path(__file__).resolve().parent.parent
KEY_SHAPE = re.compile(r"odea_[A-Za-z0-9]{8}_[A-Za-z0-9]{32}")
TEXT = "Good evening, Abuja. The last bus leaves at ten."
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


def create_user(
    invoke: Invoke,
    email: str = "ada@example.com",
    plan: str = "free",
    *extra: str,
    env: dict[str, str] | None = None,
) -> Result:
    return invoke(
        "users", "create", "--name", "Ada Obi", "--email", email, "--plan", plan, *extra, env=env
    )


def assert_operator_error(result: Result, code: int, *words: str) -> str:
    """Exit ``code``, ``error: ...`` on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    flat = " ".join(result.stderr.split())  # readable even where the console wrapped it
    for word in words:
        assert word in flat, flat
    return flat


# --- db upgrade ----------------------------------------------------------------------------


def test_db_upgrade_migrates_an_empty_database(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        result = CliRunner().invoke(app, ["db", "upgrade"], env={"DATABASE_URL": url})
        assert result.exit_code == 0, result.stderr
        assert "head" in result.stderr and result.stdout == ""
        eng = create_engine(sync_url(url), poolclass=NullPool)
        try:
            assert {"plans", "users", "api_keys", "voices", "usage"} <= set(
                inspect(eng).get_table_names()
            )
            with eng.connect() as conn:
                assert len(conn.execute(select(Plan.__table__.c.id)).all()) == 4
            again = CliRunner().invoke(app, ["db", "upgrade", "--json"], env={"DATABASE_URL": url})
            assert again.exit_code == 0, again.stderr
            data = json.loads(again.stdout)
            with eng.connect() as conn:
                head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert data["from"] == data["to"] == head and data["changed"] is False
            assert data["target"] == "head"
        finally:
            eng.dispose()


def test_db_upgrade_json_says_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{(tmp_path / 'fresh.db').as_posix()}"
    result = CliRunner().invoke(app, ["db", "upgrade", "--json"], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["from"] is None and data["to"] and data["changed"] is True
    assert data["database"] == url
    secret = "postgresql://odea:s3cret-pw@127.0.0.1:1/x"
    refused = CliRunner().invoke(
        app, ["db", "upgrade", "no-such-revision", "--json"], env={"DATABASE_URL": url}
    )
    assert_operator_error(refused, 2, "no-such-revision")
    down = CliRunner().invoke(app, ["db", "upgrade", "--json"], env={"DATABASE_URL": secret})
    assert_operator_error(down, 3, "migration failed")
    assert "s3cret-pw" not in down.stderr and len(down.stderr.splitlines()) == 1


# --- users create --------------------------------------------------------------------------


def test_users_create_prints_json_with_the_key(invoke: Invoke) -> None:
    result = create_user(invoke, "Ada@Example.com", "basic", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert KEY_SHAPE.fullmatch(data["api_key"])
    assert data["plan"] == "basic" and isinstance(data["id"], int)
    assert data["email"] == "ada@example.com" and data["name"] == "Ada Obi"
    assert data["key_prefix"] == data["api_key"][:13]


def test_the_key_is_stored_only_as_its_hash(
    invoke: Invoke, engine: Engine, settings: Settings
) -> None:
    plain = json.loads(create_user(invoke, "ada@example.com", "free", "--json").stdout)["api_key"]
    with engine.connect() as conn:
        [row] = conn.execute(select(ApiKey.__table__)).all()
        assert row.key_hash == hash_key(plain, settings.pepper)
        assert row.prefix == plain[:13]
        secret = plain.split("_")[2]
        for table in inspect(engine).get_table_names():
            dump = repr(conn.execute(text(f'SELECT * FROM "{table}"')).all())
            assert secret not in dump, f"the key's secret is stored in plain in {table}"


async def test_a_created_key_works_in_a_speech_job(invoke: Invoke, run_job: JobRunner) -> None:
    result = await asyncio.to_thread(create_user, invoke, "ada@example.com", "free", "--json")
    assert result.exit_code == 0, result.stderr
    key = json.loads(result.stdout)["api_key"]
    out = await run_job(api_key=key, text=TEXT, voice="british-female")
    assert "error" not in out, out
    assert out["duration_seconds"] > 0 and out["quota"]["used_seconds"] > 0
    usage = await run_job(api_key=key, action="usage")
    assert "error" not in usage, usage


def test_table_output_shows_the_key_once(invoke: Invoke) -> None:
    result = create_user(invoke)
    assert result.exit_code == 0, result.stderr
    keys = KEY_SHAPE.findall(result.stdout)
    assert len(keys) == 1


def test_duplicate_email_is_an_operator_error(invoke: Invoke) -> None:
    assert create_user(invoke, "ada@example.com").exit_code == 0
    result = create_user(invoke, "ADA@example.com")
    assert_operator_error(result, 2, "ada@example.com", "already exists")


@backend_independent
def test_a_long_operator_error_is_still_one_line(invoke: Invoke) -> None:
    email = "accounts-payable.department@a-rather-long-company-name.example.com"
    assert create_user(invoke, email).exit_code == 0
    result = create_user(invoke, email)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr


@backend_independent
def test_unknown_plan_lists_the_plans(invoke: Invoke, engine: Engine) -> None:
    result = create_user(invoke, "ada@example.com", "platinum")
    assert_operator_error(result, 2, "platinum", "free", "basic", "pro", "enterprise")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0


@backend_independent
@pytest.mark.parametrize("email", ["not-an-email", "ada@", "ada@example", "a da@example.com"])
def test_bad_email_is_an_operator_error(invoke: Invoke, engine: Engine, email: str) -> None:
    assert_operator_error(create_user(invoke, email), 2, "email")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 0


def test_unreachable_database_exits_3(invoke: Invoke, settings: Settings) -> None:
    env = {**cli_env(settings), "DATABASE_URL": UNREACHABLE}
    result = create_user(invoke, env=env)
    assert_operator_error(result, 3, "database unavailable", "DATABASE_URL")
    voice = invoke(
        "voices",
        "add",
        "--name",
        "calm-woman",
        "--minimax-id",
        "English_CalmWoman",
        "--language",
        "en-US",
        "--gender",
        "female",
        env=env,
    )
    assert_operator_error(voice, 3, "database unavailable")
    upgrade = invoke("db", "upgrade", env=env)
    assert_operator_error(upgrade, 3, "migration failed")


def test_unmigrated_database_exits_3_and_says_so(
    invoke: Invoke, settings: Settings, backend: str, tmp_path: Path
) -> None:
    with empty_database(backend, tmp_path) as url:
        env = {**cli_env(settings), "DATABASE_URL": url}
        for result in (
            create_user(invoke, env=env),
            invoke("users", "list", env=env),
            invoke("quota", "reset-due", env=env),
        ):
            assert_operator_error(result, 3, "DATABASE_URL", "run scripts/admin db upgrade")


# --- voices add ----------------------------------------------------------------------------


def add_voice(
    invoke: Invoke, name: str, minimax_id: str = "English_CalmWoman", *extra: str
) -> Result:
    return invoke(
        "voices",
        "add",
        "--name",
        name,
        "--minimax-id",
        minimax_id,
        "--language",
        "en-US",
        "--gender",
        "female",
        *extra,
    )


async def test_an_added_voice_is_usable_by_name(
    invoke: Invoke, run_job: JobRunner, tmp_path: Path
) -> None:
    added = await asyncio.to_thread(
        add_voice,
        invoke,
        "calm-woman",
        "English_CalmWoman",
        "--description",
        "Calm and even.",
        "--json",
    )
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout) == {
        "name": "calm-woman",
        "minimax_voice_id": "English_CalmWoman",
        "language": "en-US",
        "gender": "female",
        "kind": "system",
    }
    created = await asyncio.to_thread(create_user, invoke, "ada@example.com", "free", "--json")
    key = json.loads(created.stdout)["api_key"]
    out = await run_job(api_key=key, text=TEXT, voice="calm-woman")
    assert "error" not in out, out
    assert out["voice"] == "calm-woman" and out["duration_seconds"] > 0
    listed = await run_job(api_key=key, action="voices")
    assert "calm-woman" in {v["name"] for v in listed["voices"]}
    assert "English_CalmWoman" not in json.dumps(listed)


async def test_a_voice_minimax_has_dropped_is_voice_not_found_and_free(
    invoke: Invoke, run_job: JobRunner, emu: Emulator, worker: Worker
) -> None:
    """The catalogue's MiniMax id is what reaches MiniMax: one MiniMax no longer knows
    (an expired clone) is refused upstream, and nothing is charged. `voices add` would
    refuse such an id, so the row is written directly, as if the clone had expired."""
    async with worker.pipeline().sessions() as session, session.begin():
        session.add(
            Voice(
                name="ghost-voice",
                minimax_voice_id="No_Such_Voice_Id",
                language="en-US",
                gender="female",
                kind="cloned",
                active=True,
            )
        )
    created = await asyncio.to_thread(create_user, invoke, "ada@example.com", "free", "--json")
    key = json.loads(created.stdout)["api_key"]
    out = await run_job(api_key=key, text=TEXT, voice="ghost-voice")
    assert out["error"]["code"] == "voice_not_found"
    assert emu.stats()["requests"]["t2a_v2"] >= 1
    usage = await run_job(api_key=key, action="usage")
    assert usage["quota"]["used_seconds"] == 0


@pytest.mark.parametrize("name", ["calm-woman", "british-male"])
def test_duplicate_voice_name_is_an_operator_error(invoke: Invoke, name: str) -> None:
    if name == "calm-woman":
        assert add_voice(invoke, name).exit_code == 0
    assert_operator_error(add_voice(invoke, name), 2, name, "already exists")


@backend_independent
@pytest.mark.parametrize(("name", "gender"), [("Calm Woman", "female"), ("calm-woman", "robot")])
def test_bad_voice_fields_are_operator_errors(invoke: Invoke, name: str, gender: str) -> None:
    result = invoke(
        "voices",
        "add",
        "--name",
        name,
        "--minimax-id",
        "English_CalmWoman",
        "--language",
        "en-US",
        "--gender",
        gender,
    )
    assert_operator_error(result, 2)


# --- the real script -----------------------------------------------------------------------


def test_the_embedded_database_is_the_projects_whatever_the_cwd(tmp_path: Path) -> None:
    """A copy of the project, driven from other directories with no DATABASE_URL or
    ODEATTS_DATA_DIR: every command finds the one SQLite file under the project's var/.
    (Three real processes; PYTHONDONTWRITEBYTECODE is not passed on, so only the first
    compiles the copy.)"""
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "odeatts", project / "odeatts", ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "scripts").mkdir()
    for name in ("__init__.py", "admin.py"):
        shutil.copy(ROOT / "scripts" / name, project / "scripts" / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # bytecode written: see below

    def admin(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(project / "scripts" / "admin.py"), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    database = project / "var" / "odeatts.db"
    blank = admin(elsewhere, "users", "list")
    assert blank.returncode == 3 and blank.stdout == ""
    assert blank.stderr.startswith("error: ") and "run scripts/admin db upgrade" in blank.stderr
    assert str(database) in blank.stderr
    upgraded = admin(elsewhere, "db", "upgrade", "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["database"].endswith(database.as_posix())
    made = admin(
        project / "odeatts",
        "users",
        "create",
        "--name",
        "Ada Obi",
        "--email",
        "ada@example.com",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    with contextlib.closing(sqlite3.connect(database)) as db:  # where the user was written
        assert db.execute("SELECT email FROM users").fetchall() == [("ada@example.com",)]
    assert not (elsewhere / "var").exists() and not (tmp_path / "var").exists()


def test_scripts_admin_bootstraps_then_runs_admin_py_where_you_are(tmp_path: Path) -> None:
    """``scripts/admin`` against a stand-in project: the real bootstrap would install
    into the shared .venv, so a stub records that it was asked, and a stub admin.py says
    where it ran and with which arguments."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    (project / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "admin", project / "scripts" / "admin")
    bootstrap = project / "scripts" / "bootstrap"
    bootstrap.write_text(
        '#!/usr/bin/env bash\necho "bootstrap $*" >&2\n'
        'echo "$*" > "$(dirname "$0")/../bootstrapped"\n'
    )
    bootstrap.chmod(0o755)
    (project / "scripts" / "admin.py").write_text(
        "import json, os, sys\nprint(json.dumps({'cwd': os.getcwd(), 'args': sys.argv[1:]}))\n"
    )
    (project / ".venv" / "bin" / "python").symlink_to(sys.executable)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["voices", "clone", "--name", "ada voice", "--file", "ada.wav", "--json"]
    proc = subprocess.run(
        [str(project / "scripts" / "admin"), *args],
        cwd=elsewhere,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cwd": str(elsewhere), "args": args}
    assert (project / "bootstrapped").read_text().split() == ["requirements-dev.txt"]
    assert os.access(ROOT / "scripts" / "admin", os.X_OK)


def test_no_cli_module_imports_another_but_common() -> None:
    """Command groups share code only through odeatts/cli/common.py."""
    package = ROOT / "odeatts" / "cli"
    found: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        if path.name == "__init__.py":  # assembles the app from the groups
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "odeatts.cli":
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "odeatts.cli."
            ):
                names.add(str(node.module).removeprefix("odeatts.cli."))
            elif isinstance(node, ast.Import):
                names |= {
                    a.name.removeprefix("odeatts.cli.")
                    for a in node.names
                    if a.name.startswith("odeatts.cli.")
                }
        found[path.stem] = names - {"common"}
    assert {name: names for name, names in found.items() if names} == {}
