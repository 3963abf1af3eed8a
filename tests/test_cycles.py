"""A user's new month starts with their first job after it, even when the scheduled
reset has not run yet; the reset then finds nothing left to do."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from odeatts import billing
from odeatts.cycles import next_month
from odeatts.models import BillingCycle, User, utcnow
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory

TEXT = "A new month, a new quota."


async def state(worker: Worker) -> tuple[User, list[BillingCycle]]:
    async with worker.pipeline().sessions() as session:
        user = (await session.execute(select(User))).scalar_one()
        cycles = list((await session.execute(select(BillingCycle))).scalars())
    return user, cycles


async def test_the_first_job_after_a_cycle_ends_rolls_it_over(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    start = utcnow() - dt.timedelta(days=40)
    old_end = next_month(start)
    _, key = await make_user(
        "free", used_ms=600_000, credit_ms=5_000, cycle_start=start, cycle_end=old_end
    )
    out = await run_job(api_key=key, text=TEXT, voice="british-male")
    assert "error" not in out, out  # last month's exhausted quota does not refuse it
    user, [archived] = await state(worker)
    assert (archived.cycle_start, archived.cycle_end) == (start, old_end)
    assert (archived.used_ms, archived.credit_ms, archived.quota_ms) == (600_000, 5_000, 605_000)
    assert user.cycle_start == old_end and user.cycle_end == next_month(old_end) > utcnow()
    assert user.used_ms == round(out["duration_seconds"] * 1000) and user.credit_ms == 0
    assert out["quota"]["remaining_seconds"] == 600 - out["duration_seconds"]

    summary = await billing.reset_due(worker.pipeline().sessions)
    assert (summary.due, summary.archives) == (0, [])
    assert len((await state(worker))[1]) == 1


async def test_missed_months_roll_into_the_current_cycle_once(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    start = utcnow() - dt.timedelta(days=100)
    _, key = await make_user("free", used_ms=10_000, cycle_start=start, cycle_end=next_month(start))
    first = await run_job(api_key=key, text=TEXT, voice="british-male")
    second = await run_job(api_key=key, text=TEXT, voice="british-male")
    assert "error" not in first and "error" not in second
    user, [archived] = await state(worker)
    assert archived.cycle_start == start and archived.cycle_end == user.cycle_start
    assert user.cycle_start <= utcnow() < user.cycle_end
    assert user.used_ms == round((first["duration_seconds"] + second["duration_seconds"]) * 1000)


async def test_a_read_only_action_does_not_roll_the_cycle(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    start = utcnow() - dt.timedelta(days=40)
    _, key = await make_user("free", used_ms=1_000, cycle_start=start, cycle_end=next_month(start))
    usage = await run_job(api_key=key, action="usage")
    assert usage["quota"]["used_seconds"] == 1.0
    user, cycles = await state(worker)
    assert cycles == [] and user.cycle_start == start
