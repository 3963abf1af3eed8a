"""A default voice per user (issue 13): set by an operator, used by jobs that name none.

The voice is decided where the user row is read anyway (metering.reserve: the PL/pgSQL
function on Postgres, Python on SQLite), so the end-to-end cases run on both backends;
tests/test_round_trips.py holds a job without a voice to the same two round trips.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select, update

from odeatts.models import SUCCEEDED, Usage, User, Voice
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory
from tests.support.cli import Invoke
from tests.test_admin_cli import assert_operator_error

TEXT = "Good evening, Kano."


async def cli_json(invoke: Invoke, *args: str) -> Any:
    result = await asyncio.to_thread(invoke, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


async def rows(worker: Worker) -> list[Usage]:
    async with worker.pipeline().sessions() as session:
        return list((await session.execute(select(Usage).order_by(Usage.id))).scalars())


async def test_a_job_without_voice_speaks_in_the_users_default(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, invoke: Invoke
) -> None:
    user_id, key = await make_user()
    set_ = await cli_json(
        invoke, "users", "set-voice", "--user", str(user_id), "--voice", "british-female"
    )
    assert set_["default_voice"] == "british-female" and set_["changed"] is True
    out = await run_job(api_key=key, text=TEXT)
    assert "error" not in out, out
    assert out["voice"] == "british-female"
    named = await run_job(api_key=key, text=TEXT, voice="american-male")
    assert named["voice"] == "american-male"  # a named voice wins
    recorded = await rows(worker)
    assert [r.voice for r in recorded] == ["british-female", "american-male"]
    # What stats reads: the job's times, recorded by the settle.
    assert all(r.status == SUCCEEDED and r.worker_ms is not None for r in recorded)
    times = [(r.upstream_ms, r.worker_ms) for r in recorded]
    assert all(up is not None and job is not None and 0 <= up <= job for up, job in times)
    usage = await run_job(api_key=key, action="usage")
    assert usage["default_voice"] == "british-female"
    shown = await cli_json(invoke, "users", "show", "--user", str(user_id))
    assert shown["default_voice"] == "british-female"


async def test_no_voice_and_no_default_names_the_field_and_the_choices(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    error = (await run_job(api_key=key, text=TEXT))["error"]
    assert error["code"] == "invalid_request" and error["field"] == "voice"
    assert "nigerian-male" in error["voices"] and "british-female" in error["voices"]
    assert await rows(worker) == []  # nothing written, nothing reserved


async def test_a_deactivated_default_voice_is_voice_not_found(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user(default_voice="british-male")
    async with worker.pipeline().sessions() as session, session.begin():
        await session.execute(
            update(Voice).where(Voice.name == "british-male").values(active=False)
        )
    await worker.pipeline().voices.reload()  # as the cache does within its TTL
    error = (await run_job(api_key=key, text=TEXT))["error"]
    assert error["code"] == "voice_not_found" and error["field"] == "voice"
    assert "british-male" not in error["voices"]
    [row] = await rows(worker)
    assert (row.status, row.error_code, row.duration_ms) == ("failed", "voice_not_found", None)
    async with worker.pipeline().sessions() as session:
        assert (await session.execute(select(User.used_ms))).scalar_one() == 0


async def test_set_voice_takes_only_an_active_voice_and_clears(
    make_user: UserFactory, invoke: Invoke
) -> None:
    user_id, _ = await make_user()
    unknown = await asyncio.to_thread(
        invoke, "users", "set-voice", "--user", str(user_id), "--voice", "klingon-male"
    )
    assert_operator_error(unknown, 2, "klingon-male", "british-female")
    neither = await asyncio.to_thread(invoke, "users", "set-voice", "--user", str(user_id))
    assert_operator_error(neither, 2, "--voice NAME or --clear")
    await cli_json(invoke, "users", "set-voice", "--user", str(user_id), "--voice", "british-male")
    cleared = await cli_json(invoke, "users", "set-voice", "--user", str(user_id), "--clear")
    assert cleared["default_voice"] is None and cleared["previous_default_voice"] == "british-male"
