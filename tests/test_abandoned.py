"""The scheduled job closes dead workers' reservations (they had already stopped counting
against the quota when their lease TTL passed); live ones are left alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import select

from odeatts.models import Usage, utcnow
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory
from tests.support.cli import Invoke
from tests.support.ledger import add_reservation


async def reserved_row(worker: Worker, user_id: int, job_id: str, age: dt.timedelta) -> None:
    sessions = worker.pipeline().sessions
    await add_reservation(sessions, user_id, job_id, 3_000, reserved_at=utcnow() - age)


async def test_reset_due_closes_only_stale_reservations(
    invoke: Invoke, make_user: UserFactory, worker: Worker, run_job: JobRunner
) -> None:
    user_id, key = await make_user()
    ttl = dt.timedelta(seconds=worker.settings.lease_ttl_seconds)
    await reserved_row(worker, user_id, "dead", ttl + dt.timedelta(seconds=5))
    await reserved_row(worker, user_id, "alive", dt.timedelta(seconds=5))

    result = await asyncio.to_thread(invoke, "quota", "reset-due", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["abandoned_reservations"] == 1
    async with worker.pipeline().sessions() as session:
        rows = {r.job_id: r for r in (await session.execute(select(Usage))).scalars()}
    assert (rows["dead"].status, rows["dead"].error_code) == ("failed", "abandoned")
    assert rows["alive"].status == "reserved"

    again = await asyncio.to_thread(invoke, "quota", "reset-due", "--json")
    assert json.loads(again.stdout)["abandoned_reservations"] == 0
    # RunPod re-delivering the dead job runs it, once.
    out = await run_job("dead", api_key=key, text="Back again.", voice="british-male")
    assert "error" not in out, out
