"""Metering in one worker: duplicates, quota, RPM, streams, cancellation, stale
reservations, and the callers' own ``usage`` and ``voices`` actions. Both backends.
(Many processes at once are in test_fleet.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from typing import cast

import pytest
from sqlalchemy import select, update

from minimax_emulator import Emulator
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory
from tests.support.ledger import add_reservation

TEXT = "Every good boy deserves fudge."


async def used_ms(worker: Worker, user_id: int) -> int:
    async with worker.pipeline().sessions() as session:
        return (await session.execute(select(User.used_ms).where(User.id == user_id))).scalar_one()


async def statuses(worker: Worker) -> list[tuple[str, str | None]]:
    async with worker.pipeline().sessions() as session:
        rows = (await session.execute(select(Usage).order_by(Usage.id))).scalars()
        return [(r.status, r.error_code) for r in rows]


async def test_a_job_delivered_twice_in_sequence_is_charged_once(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, emu: Emulator
) -> None:
    user_id, key = await make_user()
    first = await run_job("same-job", api_key=key, text=TEXT, voice="british-female")
    second = await run_job("same-job", api_key=key, text=TEXT, voice="british-female")
    assert "error" not in first
    assert second["error"]["code"] == "duplicate_job"
    assert second["error"]["job_status"] == "completed"
    assert await used_ms(worker, user_id) == round(first["duration_seconds"] * 1000)
    assert emu.stats()["requests"]["t2a_v2"] == 1


async def test_a_job_delivered_twice_at_once_is_synthesised_and_charged_once(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, emu: Emulator
) -> None:
    user_id, key = await make_user("pro")
    emu.configure(latency_seconds=0.3)
    results = await asyncio.gather(
        *[run_job("twin", api_key=key, text=TEXT, voice="british-female") for _ in range(4)]
    )
    ok = [r for r in results if "error" not in r]
    assert len(ok) == 1
    assert {r["error"]["code"] for r in results if "error" in r} == {"duplicate_job"}
    assert await used_ms(worker, user_id) == round(ok[0]["duration_seconds"] * 1000)
    assert emu.stats()["requests"]["t2a_v2"] == 1


async def test_a_failed_job_can_be_retried_under_the_same_id(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, emu: Emulator
) -> None:
    user_id, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": 1026, "times": 1})
    assert (await run_job("retry-me", api_key=key, text=TEXT, voice="british-female"))["error"][
        "code"
    ] == "content_rejected"
    out = await run_job("retry-me", api_key=key, text=TEXT, voice="british-female")
    assert "error" not in out
    async with worker.pipeline().sessions() as session:
        [row] = (await session.execute(select(Usage))).scalars().all()
    assert (row.status, row.attempts) == ("succeeded", 2)
    assert await used_ms(worker, user_id) == row.duration_ms


async def test_quota_is_refused_when_the_estimate_does_not_fit(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, emu: Emulator
) -> None:
    user_id, key = await make_user("free", used_ms=598_000)  # 2 s left of 600
    out = await run_job(api_key=key, text=TEXT * 3, voice="british-female")
    assert out["error"]["code"] == "quota_exceeded" and out["error"]["status"] == 402
    assert out["error"]["remaining_seconds"] == pytest.approx(2.0)
    assert emu.stats()["requests"].get("t2a_v2", 0) == 0
    assert await statuses(worker) == [("refused", "quota_exceeded")]
    assert await used_ms(worker, user_id) == 598_000
    short = await run_job(api_key=key, text="Hi.", voice="british-female")
    assert "error" not in short, short


async def test_enterprise_override_and_plan_change_apply_to_the_next_job(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    user_id, key = await make_user("free", used_ms=600_000)
    assert (await run_job(api_key=key, text=TEXT, voice="british-female"))["error"][
        "code"
    ] == "quota_exceeded"
    async with worker.pipeline().sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == user_id).values(plan_id="basic"))
    assert "error" not in await run_job(api_key=key, text=TEXT, voice="british-female")
    async with worker.pipeline().sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(plan_id="enterprise", monthly_seconds_override=1)
        )
    assert (await run_job(api_key=key, text=TEXT, voice="british-female"))["error"][
        "code"
    ] == "quota_exceeded"


async def test_rpm_is_enforced_with_retry_after(
    run_job: JobRunner, make_user: UserFactory, worker: Worker, emu: Emulator
) -> None:
    user_id, key = await make_user("free", rpm_override=3)
    for _ in range(3):
        assert "error" not in await run_job(api_key=key, text="Hi.", voice="british-male")
    out = await run_job(api_key=key, text="Hi.", voice="british-male")
    assert out["error"]["code"] == "rate_limited" and out["error"]["status"] == 429
    assert 0 < out["error"]["retry_after"] <= 60 and out["error"]["limit"] == 3
    assert emu.stats()["requests"]["t2a_v2"] == 3
    assert (await statuses(worker))[-1] == ("refused", "rate_limited")
    charged = await used_ms(worker, user_id)
    async with worker.pipeline().sessions() as session:
        total = (
            (await session.execute(select(Usage.duration_ms).where(Usage.status == "succeeded")))
            .scalars()
            .all()
        )
    assert charged == sum(cast(Sequence[int], total))  # succeeded: never None


async def test_concurrent_streams_are_limited_per_plan(
    run_job: JobRunner, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user("basic")  # 2 streams
    emu.configure(latency_seconds=0.5)
    results = await asyncio.gather(
        *[run_job(api_key=key, text="Hi.", voice="british-male") for _ in range(4)]
    )
    codes = sorted(r.get("error", {}).get("code", "ok") for r in results)
    assert codes == ["concurrency_limited", "concurrency_limited", "ok", "ok"]
    assert emu.stats()["in_flight_max"] <= 2
    emu.configure(latency_seconds=0.0)
    assert "error" not in await run_job(api_key=key, text="Hi.", voice="british-male")


async def test_a_cancelled_job_releases_its_lease_and_reservation(
    make_user: UserFactory, worker: Worker, emu: Emulator, run_job: JobRunner
) -> None:
    user_id, key = await make_user()  # free: one stream
    emu.configure(latency_seconds=2.0)
    task = asyncio.create_task(
        worker.handle(
            {"id": "cancel-me", "input": {"api_key": key, "text": TEXT, "voice": "british-male"}}
        )
    )
    deadline = time.monotonic() + 10
    while emu.stats()["in_flight"] == 0:  # cancelled mid-synthesis, holding everything
        assert not task.done(), task.result()
        assert time.monotonic() < deadline, "the job never reached MiniMax"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await statuses(worker) == [("failed", "cancelled")]
    assert await used_ms(worker, user_id) == 0
    emu.configure(latency_seconds=0.0)
    assert "error" not in await run_job(api_key=key, text="Hi.", voice="british-male")


async def test_a_dead_workers_reservation_lapses_after_the_lease_ttl(
    make_user: UserFactory, worker: Worker, run_job: JobRunner
) -> None:
    user_id, key = await make_user("free", used_ms=590_000)  # 10 s left
    # A worker died holding a 9 s reservation: it counts until the TTL passes.
    await add_reservation(worker.pipeline().sessions, user_id, "dead", 9_000)
    assert (await run_job(api_key=key, text=TEXT, voice="british-male"))["error"][
        "code"
    ] == "quota_exceeded"
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=worker.settings.lease_ttl_seconds + 1)
    async with worker.pipeline().sessions() as session, session.begin():
        await session.execute(update(Usage).where(Usage.job_id == "dead").values(reserved_at=old))
    assert "error" not in await run_job(api_key=key, text=TEXT, voice="british-male")
    # And RunPod re-delivering the dead job takes its row over instead of double-charging.
    out = await run_job("dead", api_key=key, text="Hi.", voice="british-male")
    assert "error" not in out
    async with worker.pipeline().sessions() as session:
        row = (await session.execute(select(Usage).where(Usage.job_id == "dead"))).scalar_one()
    assert (row.status, row.attempts) == ("succeeded", 2)


async def test_usage_action_reports_plan_limits_and_recent_rows(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user("basic")
    done = await run_job("u-1", api_key=key, text=TEXT, voice="british-male")
    await run_job("u-2", api_key=key, text=TEXT, voice="nope")
    out = await run_job(api_key=key, action="usage", limit=5)
    assert out["plan"] == "basic"
    assert out["limits"] == {"monthly_seconds": 3600, "rpm": 30, "concurrent_streams": 2}
    assert out["quota"]["used_seconds"] == pytest.approx(done["duration_seconds"], abs=0.001)
    assert out["quota"]["remaining_seconds"] == pytest.approx(
        3600 - done["duration_seconds"], abs=0.001
    )
    assert [r["request_id"] for r in out["recent"]] == ["u-1"]
    assert out["recent"][0]["status"] == "succeeded"
    assert out["cycle"]["start"] < out["cycle"]["end"]


async def test_voices_action_filters_the_catalogue(
    run_job: JobRunner, make_user: UserFactory
) -> None:
    _, key = await make_user()
    out = await run_job(api_key=key, action="voices", language="en-NG", gender="female")
    assert [v["name"] for v in out["voices"]] == ["nigerian-female"]
    everything = await run_job(api_key=key, action="voices")
    assert len(everything["voices"]) == 6
    assert all("minimax_voice_id" not in v for v in everything["voices"])
    bad = await run_job(api_key="odea_AAAAAAAA_" + "B" * 32, action="voices")
    assert bad["error"]["code"] == "unauthorized"
