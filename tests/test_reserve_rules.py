"""reserve, settle, settle_deferred and release, rule by rule, on both backends.

Postgres runs them as server-side functions in one round trip each (migration 0004);
SQLite runs the Python path (metering.py says why). These tests hold the two to the
same behaviour: who may reserve, the quota, re-deliveries and take-overs, the cycle
roll, settling once, deferred settling and release.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, update

from odeatts import metering
from odeatts.db import Sessions
from odeatts.errors import DuplicateJob, QuotaExceeded, Unauthorized
from odeatts.keys import hash_key
from odeatts.models import ApiKey, BillingCycle, Usage, User, utcnow
from odeatts.outbox import Charge
from odeatts.worker import Worker
from tests.conftest import PEPPER, UserFactory

TTL = dt.timedelta(seconds=330)


@pytest.fixture
async def sessions(worker: Worker) -> Sessions:
    return worker.pipeline().sessions


def meta(job_id: str = "job-1", estimated_ms: int = 5_000) -> metering.JobMeta:
    return metering.JobMeta(
        job_id=job_id,
        voice="british-male",
        model="speech-02-turbo",
        text_chars=42,
        estimated_ms=estimated_ms,
    )


async def reserve(
    sessions: Sessions,
    key: str,
    job_id: str = "job-1",
    estimated_ms: int = 5_000,
    now: dt.datetime | None = None,
) -> metering.Reservation:
    return await metering.reserve(
        sessions,
        key_hash=hash_key(key, PEPPER.encode()),
        job=meta(job_id, estimated_ms),
        now=now or utcnow(),
        stale_after=TTL,
    )


def charge(r: metering.Reservation, duration_ms: int = 4_000, job_id: str = "job-1") -> Charge:
    return Charge(
        job_id=job_id,
        usage_id=r.usage_id,
        attempt=r.attempt,
        user_id=r.caller.user_id,
        duration_ms=duration_ms,
        billed_characters=42,
        trace_id="trace",
        settled_at=utcnow().isoformat(),
    )


async def row(sessions: Sessions, job_id: str = "job-1") -> Usage:
    async with sessions() as session:
        return (await session.execute(select(Usage).where(Usage.job_id == job_id))).scalar_one()


async def used(sessions: Sessions, user_id: int) -> int:
    async with sessions() as session:
        return (await session.execute(select(User.used_ms).where(User.id == user_id))).scalar_one()


async def edit(sessions: Sessions, model: Any, where: Any, **values: Any) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(model).where(where).values(**values))


async def test_a_reservation_records_the_row_and_the_caller(
    sessions: Sessions, make_user: UserFactory
) -> None:
    user_id, key = await make_user("basic", used_ms=1_000, credit_ms=2_000)
    r = await reserve(sessions, key)
    assert (r.attempt, r.estimated_ms, r.caller.user_id, r.caller.used_ms) == (
        1,
        5_000,
        user_id,
        1_000,
    )
    assert r.caller.allowance.plan_id == "basic"
    assert (r.caller.allowance.rpm.value, r.caller.allowance.concurrent_streams.value) == (30, 2)
    assert r.caller.allowance.quota_ms == 3_602_000
    stored = await row(sessions)
    assert (stored.id, stored.status, stored.attempts, stored.estimated_ms) == (
        r.usage_id,
        "reserved",
        1,
        5_000,
    )
    assert (stored.voice, stored.model, stored.text_chars, stored.error_code) == (
        "british-male",
        "speech-02-turbo",
        42,
        None,
    )


@pytest.mark.parametrize("case", ["unknown", "revoked", "expired", "inactive"])
async def test_who_may_not_reserve(sessions: Sessions, make_user: UserFactory, case: str) -> None:
    user_id, key = await make_user()
    past = utcnow() - dt.timedelta(seconds=1)
    if case == "unknown":
        key = key[:-4] + "abcd"
    elif case == "revoked":
        await edit(sessions, ApiKey, ApiKey.user_id == user_id, revoked_at=past)
    elif case == "expired":
        await edit(sessions, ApiKey, ApiKey.user_id == user_id, expires_at=past)
    else:
        await edit(sessions, User, User.id == user_id, active=False)
    with pytest.raises(Unauthorized):
        await reserve(sessions, key)
    async with sessions() as session:
        assert (await session.execute(select(Usage))).first() is None


async def test_a_key_in_its_grace_period_still_reserves(
    sessions: Sessions, make_user: UserFactory
) -> None:
    user_id, key = await make_user()
    await edit(sessions, ApiKey, ApiKey.user_id == user_id, expires_at=utcnow() + TTL)
    assert (await reserve(sessions, key)).attempt == 1


async def test_exactly_fitting_fits_and_one_ms_more_is_refused_and_recorded(
    sessions: Sessions, make_user: UserFactory
) -> None:
    _, key = await make_user("free", used_ms=590_000)  # 10 s left
    await reserve(sessions, key, "a", 4_000)  # live: 6 s left
    await reserve(sessions, key, "b", 6_000)  # exactly fits: 0 left
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(sessions, key, "c", 1)
    assert refused.value.details == {"remaining_seconds": 0.0, "estimated_seconds": 0.001}
    stored = await row(sessions, "c")
    assert (stored.status, stored.error_code, stored.attempts) == ("refused", "quota_exceeded", 1)


async def test_a_stale_reservation_no_longer_counts(
    sessions: Sessions, make_user: UserFactory
) -> None:
    _, key = await make_user("free", used_ms=590_000)
    now = utcnow()
    await reserve(sessions, key, "dead", 10_000, now=now - TTL)
    await reserve(sessions, key, "alive", 10_000, now=now)  # the dead one lapsed


async def test_a_completed_job_is_a_duplicate_and_charged_once(
    sessions: Sessions, make_user: UserFactory
) -> None:
    user_id, key = await make_user()
    r = await reserve(sessions, key)
    view = await metering.settle(sessions, charge(r), caller=r.caller)
    assert view.used_ms == 4_000
    with pytest.raises(DuplicateJob) as again:
        await reserve(sessions, key)
    assert again.value.details == {"job_status": "completed"}
    # Settling the same charge again charges nothing.
    view = await metering.settle(sessions, charge(r), caller=r.caller)
    assert view.used_ms == r.caller.used_ms == 0
    assert await used(sessions, user_id) == 4_000
    stored = await row(sessions)
    assert (stored.status, stored.duration_ms, stored.billed_characters, stored.trace_id) == (
        "succeeded",
        4_000,
        42,
        "trace",
    )


async def test_another_users_job_id_is_a_duplicate(
    sessions: Sessions, make_user: UserFactory
) -> None:
    _, key = await make_user()
    _, other = await make_user()
    await reserve(sessions, key)
    with pytest.raises(DuplicateJob) as again:
        await reserve(sessions, other)
    assert again.value.details == {"job_status": "completed"}


async def test_a_live_job_is_in_progress_and_a_lapsed_one_is_taken_over(
    sessions: Sessions, make_user: UserFactory
) -> None:
    user_id, key = await make_user()
    now = utcnow()
    first = await reserve(sessions, key, now=now)
    with pytest.raises(DuplicateJob) as again:
        await reserve(sessions, key, now=now + TTL / 2)
    assert again.value.details == {"job_status": "in_progress"}
    second = await reserve(sessions, key, estimated_ms=7_000, now=now + TTL)
    assert (second.usage_id, second.attempt) == (first.usage_id, 2)
    stored = await row(sessions)
    assert (stored.status, stored.attempts, stored.estimated_ms) == ("reserved", 2, 7_000)
    # The first attempt woke up: its charge and its release are no longer its to make.
    assert (await metering.settle(sessions, charge(first), caller=first.caller)).used_ms == 0
    await metering.release(
        sessions, reservation=first, status="failed", error_code="internal", now=utcnow()
    )
    assert (await row(sessions)).status == "reserved"
    assert await used(sessions, user_id) == 0
    await metering.settle(sessions, charge(second, 6_000), caller=second.caller)
    assert await used(sessions, user_id) == 6_000


@pytest.mark.parametrize("status", ["failed", "refused"])
async def test_a_failed_or_refused_job_is_taken_over_at_once(
    sessions: Sessions, make_user: UserFactory, status: str
) -> None:
    _, key = await make_user()
    first = await reserve(sessions, key)
    await metering.release(
        sessions, reservation=first, status=status, error_code="x", now=utcnow(), trace_id="t"
    )
    stored = await row(sessions)
    assert (stored.status, stored.error_code, stored.trace_id) == (status, "x", "t")
    assert stored.settled_at is not None
    second = await reserve(sessions, key)
    assert second.attempt == 2
    stored = await row(sessions)
    assert (stored.status, stored.error_code, stored.trace_id, stored.settled_at) == (
        "reserved",
        None,
        None,
        None,
    )


async def test_a_release_leaves_a_settled_row_alone(
    sessions: Sessions, make_user: UserFactory
) -> None:
    _, key = await make_user()
    r = await reserve(sessions, key)
    await metering.settle(sessions, charge(r), caller=r.caller)
    await metering.release(sessions, reservation=r, status="failed", error_code="x", now=utcnow())
    assert (await row(sessions)).status == "succeeded"


async def test_a_deferred_charge_settles_an_abandoned_row_once(
    sessions: Sessions, make_user: UserFactory
) -> None:
    user_id, key = await make_user()
    now = utcnow()
    r = await reserve(sessions, key, now=now - TTL)
    assert await metering.abandon_stale(sessions, now=now, stale_after=TTL) == 1
    # The job path's own settle does not charge a row closed as abandoned...
    assert (await metering.settle(sessions, charge(r), caller=r.caller)).used_ms == 0
    # ...the outbox does: the caller got the audio. Once.
    assert await metering.settle_deferred(sessions, charge(r)) is True
    assert await metering.settle_deferred(sessions, charge(r)) is False
    assert await used(sessions, user_id) == 4_000
    assert (await row(sessions)).status == "succeeded"


async def test_a_charge_for_another_user_charges_nobody(
    sessions: Sessions, make_user: UserFactory
) -> None:
    user_id, key = await make_user()
    other_id, _ = await make_user()
    r = await reserve(sessions, key)
    wrong = replace(charge(r), user_id=other_id)
    assert await metering.settle_deferred(sessions, wrong) is False
    assert (await used(sessions, user_id), await used(sessions, other_id)) == (0, 0)


async def test_an_ended_cycle_is_rolled_by_the_reservation(
    sessions: Sessions, make_user: UserFactory
) -> None:
    now = utcnow()
    start, end = now - dt.timedelta(days=31), now - dt.timedelta(seconds=1)
    user_id, key = await make_user(
        "free", used_ms=600_000, credit_ms=1_000, cycle_start=start, cycle_end=end
    )
    r = await reserve(sessions, key, now=now)  # last month's spent quota does not refuse it
    assert (r.caller.used_ms, r.caller.allowance.credit_ms) == (0, 0)
    async with sessions() as session:
        user = await session.get(User, user_id)
        [archived] = (await session.execute(select(BillingCycle))).scalars().all()
    assert user is not None and user.cycle_start == end and user.cycle_end > now
    assert (archived.used_ms, archived.credit_ms, archived.quota_ms) == (600_000, 1_000, 601_000)
    # The next job is an ordinary one (on Postgres: the one-round-trip path again).
    assert (await reserve(sessions, key, "job-2", now=now)).caller.used_ms == 0
