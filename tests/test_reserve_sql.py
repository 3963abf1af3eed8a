"""The quota rule is written twice: in allowance.py, its home, and in ``odeatts_reserve``
(migration 0004), so that Postgres can decide and insert in one round trip. This test
holds the two together: for each case the SQL function's decision, and the limits and
amounts it returns, are what allowance.py computes from the same rows.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from odeatts import metering
from odeatts.allowance import Allowance, Limit, allowance_of
from odeatts.errors import QuotaExceeded
from odeatts.keys import hash_key
from odeatts.models import Plan, Usage, User, utcnow
from odeatts.worker import Worker
from tests.conftest import PEPPER, UserFactory
from tests.support.ledger import add_reservation

TTL = dt.timedelta(seconds=330)

# plan, monthly seconds override, credit_ms, used_ms, live reserved ms, estimate ms
CASES = {
    "room to spare": ("free", None, 0, 0, 0, 5_000),
    "exactly fits": ("free", None, 0, 590_000, 4_000, 6_000),
    "one ms over": ("free", None, 0, 590_000, 4_000, 6_001),
    "override below the plan, exactly": ("basic", 10, 0, 0, 0, 10_000),
    "override below the plan, over": ("basic", 10, 0, 0, 0, 10_001),
    "override above the plan": ("free", 7_200, 0, 600_000, 0, 5_000),
    "zero override is an override": ("pro", 0, 0, 0, 0, 1),
    "credit makes it fit": ("free", None, 5_000, 600_000, 0, 5_000),
    "credit taken back": ("free", None, -5_000, 590_000, 0, 5_001),
    "negative remaining": ("free", None, 0, 700_000, 0, 1),
    "negative quota": ("free", None, -700_000, 0, 0, 1),
    "live reservations fill it": ("free", None, 0, 0, 600_000, 1),
    "beyond 32 bits": ("enterprise", 3_000_000, 0, 2_999_000_000, 0, 1_000_000),
}


@pytest.mark.parametrize("backend", ["real"], indirect=True)
@pytest.mark.parametrize("case", list(CASES))
async def test_the_sql_function_decides_as_allowance_py(
    worker: Worker, make_user: UserFactory, case: str
) -> None:
    plan_id, override, credit, used, live, estimate = CASES[case]
    user_id, key = await make_user(
        plan_id, monthly_seconds_override=override, credit_ms=credit, used_ms=used
    )
    sessions = worker.pipeline().sessions
    now = utcnow()
    for job_id, amount, at in (("live", live, now), ("stale", 10**9, now - TTL)):
        if amount:
            await add_reservation(sessions, user_id, job_id, amount, reserved_at=at)
    async with sessions() as session:
        user, plan = (await session.execute(select(User, Plan).join(Plan))).one()
    expected = allowance_of(user, plan).quota(used_ms=used, reserved_ms=live)

    job = metering.JobMeta("job", "british-male", "speech-02-turbo", 1, estimate)
    try:
        reservation = await metering.reserve(
            sessions, key_hash=hash_key(key, PEPPER.encode()), job=job, now=now, stale_after=TTL
        )
    except QuotaExceeded as refused:
        fits, remaining = False, refused.details["remaining_seconds"]
    else:
        fits, remaining = True, None
        assert reservation.caller.allowance == allowance_of(user, plan)
        assert reservation.caller.used_ms == used

    assert fits == expected.fits(estimate), case
    if not fits:
        assert remaining == expected.remaining_ms / 1000
    async with sessions() as session:
        status = (await session.execute(select(Usage.status).where(Usage.job_id == "job"))).one()
    assert status[0] == ("reserved" if expected.fits(estimate) else "refused")


def test_the_cases_cover_both_answers() -> None:
    answers = set()
    for plan_id, override, credit, used, live, estimate in CASES.values():
        plans = {"free": 600, "basic": 3_600, "pro": 14_400, "enterprise": 0}
        allowance = Allowance(plan_id, Limit(plans[plan_id], override), Limit(1), Limit(1), credit)
        answers.add(allowance.quota(used_ms=used, reserved_ms=live).fits(estimate))
    assert answers == {True, False}
