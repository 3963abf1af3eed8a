"""Early admission (pipeline.py ``_admit_early``): for a key this worker has seen
reserve, the Redis admission runs beside the Postgres reservation, asked with what the
key's last reservation said. It stands only if the job's own reservation leads to the
very same admission; otherwise it is undone, and a job the reservation refuses spends
no request and holds no stream. Both backends: the undoing is the limiter's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from odeatts import accounts, metering
from odeatts.config import Settings
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, user_factory

TEXT = "Every good boy deserves fudge."


def job(job_id: str, key: str) -> dict[str, Any]:
    return {"id": job_id, "input": {"api_key": key, "text": TEXT, "voice": "british-female"}}


def speak(run_job: JobRunner, key: str, job_id: str | None = None) -> Awaitable[dict[str, Any]]:
    return run_job(job_id, api_key=key, text=TEXT, voice="british-female")


def record(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order of ``reserved <job id>`` (a reservation came back) and ``admit <lease>``
    (an admission was asked), as the worker's jobs go."""
    events: list[str] = []
    reserve, admit = metering.reserve, worker.pipeline().limiter.admit

    async def reserving(*args: Any, **kwargs: Any) -> Any:
        try:
            return await reserve(*args, **kwargs)
        finally:
            events.append(f"reserved {kwargs['job'].job_id}")

    async def admitting(**kwargs: Any) -> Any:
        events.append(f"admit {kwargs['lease_id']}")
        return await admit(**kwargs)

    monkeypatch.setattr(metering, "reserve", reserving)  # the pipeline calls it so
    monkeypatch.setattr(worker.pipeline().limiter, "admit", admitting)
    return events


async def test_a_known_keys_admission_runs_beside_its_reservation(
    run_job: JobRunner, make_user: UserFactory, monkeypatch: pytest.MonkeyPatch, worker: Worker
) -> None:
    _, key = await make_user()
    events = record(worker, monkeypatch)
    assert "error" not in await speak(run_job, key, "first")  # a key not seen before
    assert "error" not in await speak(run_job, key, "second")
    assert events == [
        "reserved first",
        "admit first#1",  # in turn
        "admit second#1",  # early, and it stood: asked once
        "reserved second",
    ]


async def test_a_stream_of_a_known_key_is_admitted_early_and_gives_its_stream_back(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(make_settings(ODEATTS_HANDLER="stream"))
    try:
        _, key = await user_factory(worker)("free")  # one stream
        events = record(worker, monkeypatch)
        for job_id in ("learn", "streamed", "after"):
            streamed = {**job(job_id, key)["input"], "stream": True}
            items = [i async for i in worker.handler({"id": job_id, "input": streamed})]
            assert items[-1].get("done") and len(items) > 1, items[-1]  # one stream at a time
        assert events == [
            "reserved learn",
            "admit learn#1",
            "admit streamed#1",  # early: before its reservation came back
            "reserved streamed",
            "admit after#1",
            "reserved after",
        ]
    finally:
        await worker.aclose()


async def test_a_job_that_waits_for_a_postgres_connection_is_admitted_in_turn(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to overlap while it waits; a queue's admissions would all run at once."""
    worker = Worker(make_settings(ODEATTS_DB_POOL_SIZE=1))
    try:
        _, key = await user_factory(worker)("pro")
        await worker.handle(job("learn", key))
        events = record(worker, monkeypatch)
        answers = await asyncio.gather(*(worker.handle(job(n, key)) for n in ("a", "b")))
        assert not [a for a in answers if "error" in a]
        assert events.index("admit a#1") < events.index("reserved a")  # early
        assert events.index("reserved b") < events.index("admit b#1")  # in turn
    finally:
        await worker.aclose()


async def test_limits_changed_since_the_keys_last_job_are_the_ones_applied(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    user_id, key = await make_user("pro", rpm_override=1)
    sessions, user = worker.pipeline().sessions, str(user_id)
    assert "error" not in await speak(run_job, key)
    # Raised: the early admission (by the old limit, 1 a minute) is refused; the job is
    # admitted by the new one.
    await accounts.set_limits(sessions, user=user, rpm=3)
    assert "error" not in await speak(run_job, key)
    # Lowered: the early admission (by 3) would pass; it is undone, and the new limit
    # (2, both used) refuses the job.
    await accounts.set_limits(sessions, user=user, rpm=2)
    refused = await speak(run_job, key)
    assert refused["error"]["code"] == "rate_limited"
    # The undone admission took nothing: by 3 again, exactly one more job fits.
    await accounts.set_limits(sessions, user=user, rpm=3)
    assert "error" not in await speak(run_job, key)
    assert (await speak(run_job, key))["error"]["code"] == "rate_limited"


Refuse = Callable[[Worker, int, str, str], Awaitable[str]]


async def _revoke(worker: Worker, user_id: int, key: str, job_id: str) -> str:
    await accounts.revoke_key(worker.pipeline().sessions, prefix=key)  # whole: its prefix
    return str(uuid.uuid4())


async def _exhaust(worker: Worker, user_id: int, key: str, job_id: str) -> str:
    await accounts.set_limits(worker.pipeline().sessions, user=str(user_id), monthly_seconds=1)
    return str(uuid.uuid4())


async def _repeat(worker: Worker, user_id: int, key: str, job_id: str) -> str:
    return job_id  # the job delivered again: a duplicate


@pytest.mark.parametrize(
    ("refuse", "code"),
    [(_revoke, "unauthorized"), (_exhaust, "quota_exceeded"), (_repeat, "duplicate_job")],
)
async def test_a_job_its_reservation_refuses_spends_no_request_and_holds_no_stream(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, refuse: Refuse, code: str
) -> None:
    user_id, key = await make_user("free", rpm_override=2)  # 1 stream
    sessions = worker.pipeline().sessions
    assert "error" not in await speak(run_job, key, "first")
    job_id = await refuse(worker, user_id, key, "first")
    assert (await speak(run_job, key, job_id))["error"]["code"] == code
    await worker.pipeline().admissions_undone()
    # Back to a usable key and quota: one request of the two is left, and the stream is
    # free (the early admission had taken both).
    pepper = worker.settings.pepper
    other = (await accounts.issue_key(sessions, user=str(user_id), pepper=pepper)).plain
    await accounts.set_limits(sessions, user=str(user_id), clear=True)
    await accounts.set_limits(sessions, user=str(user_id), rpm=2)
    assert "error" not in await speak(run_job, other)
    assert (await speak(run_job, other))["error"]["code"] == "rate_limited"
