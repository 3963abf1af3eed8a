"""The plan rules, as pure arithmetic on rows in memory (no database, no Redis)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from odeatts.allowance import (
    LIMIT_NAMES,
    OVERRIDE_COLUMNS,
    Allowance,
    Limit,
    QuotaState,
    QuotaView,
    allowance_of,
    live_after,
)
from odeatts.models import Plan, User

NOW = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)


def basic() -> Plan:
    return Plan(id="basic", name="Basic", monthly_seconds=3600, rpm=30, max_streams=2)


def user(**fields: object) -> User:
    values: dict[str, object] = {
        "id": 7,
        "email": "ada@example.com",
        "plan_id": "basic",
        "used_ms": 0,
        "credit_ms": 0,
        "monthly_seconds_override": None,
        "rpm_override": None,
        "streams_override": None,
        "cycle_start": NOW - dt.timedelta(days=14),
        "cycle_end": NOW + dt.timedelta(days=16),
    }
    values.update(fields)
    return User(**values)


def test_a_limit_is_the_plan_s_unless_overridden() -> None:
    assert (Limit(30).value, Limit(30).source) == (30, "plan")
    assert (Limit(30, 5).value, Limit(30, 5).source) == (5, "override")


def test_the_plan_s_limits_apply_without_overrides() -> None:
    allowance = allowance_of(user(), basic())
    assert allowance.plan_id == "basic"
    assert {n: (lim.value, lim.source) for n, lim in allowance.limits.items()} == {
        "monthly_seconds": (3600, "plan"),
        "rpm": (30, "plan"),
        "concurrent_streams": (2, "plan"),
    }
    assert allowance.quota_ms == 3_600_000


def test_each_override_replaces_only_its_own_limit() -> None:
    allowance = allowance_of(user(rpm_override=7), basic())
    assert (allowance.rpm.value, allowance.rpm.source) == (7, "override")
    assert allowance.concurrent_streams == Limit(2)
    assert allowance.monthly_seconds == Limit(3600)


def test_the_quota_is_the_monthly_limit_plus_credit() -> None:
    granted = allowance_of(user(monthly_seconds_override=1200, credit_ms=30_000), basic())
    assert granted.quota_ms == 1_230_000
    taken_back = allowance_of(user(credit_ms=-600_000), basic())
    assert taken_back.quota_ms == 3_000_000


def test_a_zero_override_is_an_override_not_the_plan() -> None:
    assert allowance_of(user(rpm_override=0), basic()).rpm.value == 0


def test_limits_come_in_the_order_operators_see() -> None:
    assert tuple(allowance_of(user(), basic()).limits) == LIMIT_NAMES


def test_every_limit_has_a_user_column_that_overrides_it() -> None:
    assert set(OVERRIDE_COLUMNS) == set(LIMIT_NAMES)
    for column in OVERRIDE_COLUMNS.values():
        assert column in User.__table__.columns


def test_remaining_is_what_is_neither_used_nor_reserved() -> None:
    view = QuotaView(quota_ms=10_000, used_ms=6_000, reserved_ms=1_500)
    assert view.remaining_ms == 2_500
    assert view.fits(2_500) and not view.fits(2_501)


def test_remaining_never_goes_below_zero() -> None:
    # A late settle or a credit taken back can leave used above the quota.
    assert QuotaView(quota_ms=10_000, used_ms=12_000).remaining_ms == 0
    assert not QuotaView(quota_ms=10_000, used_ms=12_000).fits(0)


@given(
    quota=st.integers(-(10**9), 10**9),
    used=st.integers(0, 10**9),
    reserved=st.integers(0, 10**9),
    estimate=st.integers(0, 10**9),
)
def test_a_job_fits_exactly_when_its_estimate_is_within_what_remains(
    quota: int, used: int, reserved: int, estimate: int
) -> None:
    view = QuotaView(quota_ms=quota, used_ms=used, reserved_ms=reserved)
    if used + reserved <= quota:
        assert view.fits(estimate) == (estimate <= view.remaining_ms)
    else:
        assert not view.fits(estimate) and view.remaining_ms == 0


def test_the_caller_s_view_uses_the_allowance_s_quota() -> None:
    allowance = Allowance(
        plan_id="free",
        monthly_seconds=Limit(600),
        rpm=Limit(10),
        concurrent_streams=Limit(1),
        credit_ms=5_000,
    )
    assert allowance.quota(used_ms=100_000, reserved_ms=5_000) == QuotaView(605_000, 100_000, 5_000)


def test_a_reservation_is_live_for_one_lease_ttl() -> None:
    assert live_after(NOW, dt.timedelta(seconds=330)) == NOW - dt.timedelta(seconds=330)


def test_the_operators_see_plan_override_credit_and_what_is_left() -> None:
    row = user(monthly_seconds_override=1200, credit_ms=30_000, used_ms=100_500)
    allowance = allowance_of(row, basic())
    state = QuotaState(
        user_id=7,
        email="ada@example.com",
        allowance=allowance,
        quota=allowance.quota(used_ms=row.used_ms, reserved_ms=5_000),
        cycle_start=row.cycle_start,
        cycle_end=row.cycle_end,
    )
    assert state.to_dict() == {
        "user": {"id": 7, "email": "ada@example.com", "plan": "basic"},
        "plan_seconds": 3600,
        "override_seconds": 1200,
        "credit_seconds": 30.0,
        "quota_seconds": 1230.0,
        "used_seconds": 100.5,
        "reserved_seconds": 5.0,
        "remaining_seconds": 1124.5,
        "cycle": {"start": "2026-11-01T12:00:00+00:00", "end": "2026-12-01T12:00:00+00:00"},
    }
