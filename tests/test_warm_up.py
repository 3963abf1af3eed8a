"""A new worker warms up on the SDK's job loop before its first job (worker.py)."""

from __future__ import annotations

import asyncio

import pytest

from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory

pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)


async def test_the_first_job_finds_the_pools_open_and_the_catalogue_loaded(
    worker: Worker, make_user: UserFactory, run_job: JobRunner
) -> None:
    _, key = await make_user()
    await worker.aclose()  # a new process: nothing open, nothing cached
    worker.concurrency(1)  # the SDK's first call, on its job loop
    result = await run_job(api_key=key, text="Good morning.", voice="british-female")
    assert "audio_base64" in result, result
    pipeline = await worker.ready()
    pool = pipeline.engine.pool
    # The whole pool was opened before the job, which used it: nothing beyond it.
    assert pool.checkedin() == worker.settings.db_pool_size  # type: ignore[attr-defined]
    assert pool.overflow() == 0  # type: ignore[attr-defined]
    assert pipeline.voices.cached("british-female") is not None


async def test_outside_a_loop_the_modifier_only_answers_and_jobs_still_run(
    worker: Worker, make_user: UserFactory, run_job: JobRunner
) -> None:
    _, key = await make_user()
    await worker.aclose()
    concurrency = await asyncio.to_thread(worker.concurrency, 1)  # no loop in that thread
    assert concurrency == worker.settings.max_concurrency
    result = await run_job(api_key=key, text="Hello.", voice="british-female")
    assert "audio_base64" in result, result
