"""One successful speech job costs the design floor: two Postgres transactions (five
statements) and two Redis commands. A new query or command on the hot path fails here
and must be argued for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event

from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory

pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)


class Counter:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = 0
        self.redis: list[str] = []


@pytest.fixture
async def counted(worker: Worker) -> AsyncIterator[Counter]:
    counter = Counter()
    pipeline = worker.pipeline()
    engine = pipeline.engine.sync_engine

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counter.statements.append(statement.split()[0].upper())

    def on_commit(_conn: Any) -> None:
        counter.commits += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    redis = pipeline.limiter._redis  # type: ignore[attr-defined]
    original = redis.execute_command

    async def execute_command(*args: Any, **kwargs: Any) -> Any:
        counter.redis.append(str(args[0]).upper())
        return await original(*args, **kwargs)

    redis.execute_command = execute_command
    yield counter
    redis.execute_command = original
    event.remove(engine, "before_cursor_execute", on_execute)
    event.remove(engine, "commit", on_commit)


async def test_one_speech_job_is_two_transactions_and_two_redis_commands(
    worker: Worker, make_user: UserFactory, run_job: JobRunner, counted: Counter
) -> None:
    _, key = await make_user("pro")
    assert "error" not in await run_job(api_key=key, text="Warm up.", voice="british-male")
    counted.statements.clear()
    counted.commits = 0
    counted.redis.clear()

    out = await run_job(api_key=key, text="Count my round trips.", voice="british-male")

    assert "error" not in out, out
    assert counted.commits == 2
    assert counted.statements == ["SELECT", "SELECT", "INSERT", "UPDATE", "UPDATE"]
    assert counted.redis == ["EVALSHA", "ZREM"]
