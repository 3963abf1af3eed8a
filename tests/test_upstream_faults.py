"""Every MiniMax failure maps to its documented code, is retried only when a retry
can help, and charges nothing; the lease and the reservation are given back."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts import accounts
from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory, backend_independent

# A few representative codes end to end (retried, busy, final, content, the caller's,
# an operator's): tests/test_minimax_errors.py checks every row of the table.
RETRIED = {1000: "upstream_unavailable", 1002: "upstream_busy"}
FINAL = {
    1026: "content_rejected",
    2013: "invalid_request",
    2042: "voice_not_found",
    9999: "upstream_rejected",
}
OPERATOR = {1008: "service_unavailable", 2056: "service_unavailable"}
MAX_ATTEMPTS = 3  # MINIMAX_MAX_RETRIES defaults to 2


async def assert_nothing_charged(worker: Worker, code: str) -> None:
    async with worker.pipeline().sessions() as session:
        [row] = (await session.execute(select(Usage))).scalars().all()
        used = (await session.execute(select(User.used_ms))).scalar_one()
    assert (row.status, row.error_code, row.duration_ms) == ("failed", code, None)
    assert used == 0


async def assert_recovers(run_job: JobRunner, key: str) -> None:
    """The free plan has one stream: a leaked lease would refuse this next job."""
    out = await run_job(api_key=key, text="Still here.", voice="american-male")
    assert "error" not in out, out


@pytest.mark.parametrize(("code", "expected"), sorted(RETRIED.items()))
async def test_retryable_codes_are_retried_then_mapped(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    code: int,
    expected: str,
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": code, "times": 0})
    out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    assert out["error"]["code"] == expected
    assert emu.stats()["requests"]["t2a_v2"] == MAX_ATTEMPTS
    assert "retry_after" in out["error"] or expected == "upstream_unavailable"
    await assert_nothing_charged(worker, expected)
    emu.reset()
    await assert_recovers(run_job, key)


# Which code maps to which error does not depend on the backend; giving back the lease
# and the reservation does (Redis and Postgres on "real"), and it is one path for every
# final code: each code once on the embedded backend, one of them on the real one too.
@pytest.mark.parametrize(
    ("backend", "code", "expected"),
    [("embedded", code, expected) for code, expected in sorted({**FINAL, **OPERATOR}.items())]
    + [("real", 1026, FINAL[1026])],
    indirect=["backend"],
)
async def test_final_codes_are_not_retried(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    code: int,
    expected: str,
) -> None:
    _, key = await make_user()
    emu.add_fault(
        {
            "endpoint": "t2a_v2",
            "kind": "base_resp",
            "code": code,
            "times": 0,
            "msg": "invalid params, secret-ish upstream detail",
        }
    )
    out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    assert out["error"]["code"] == expected
    assert emu.stats()["requests"]["t2a_v2"] == 1
    await assert_nothing_charged(worker, expected)
    emu.reset()
    await assert_recovers(run_job, key)


@backend_independent
@pytest.mark.parametrize("code", sorted(OPERATOR))
async def test_an_account_problem_alerts_operators_once_and_not_the_caller(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    _, key = await make_user()
    emu.add_fault(
        {
            "endpoint": "t2a_v2",
            "kind": "base_resp",
            "code": code,
            "times": 0,
            "msg": "usage limit exceeded, 5-hour usage limit reached",
        }
    )
    out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    assert out["error"]["code"] == "service_unavailable" and "5-hour" not in str(out)
    alerts = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.getMessage().startswith("ALERT minimax account:")
    ]
    assert len(alerts) == 1 and str(code) in alerts[0].getMessage()


async def test_a_transient_error_is_retried_and_charged_once(
    emu: Emulator, run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": 1002, "times": 1})
    out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    assert "error" not in out, out
    assert emu.stats()["requests"]["t2a_v2"] == 2
    async with worker.pipeline().sessions() as session:
        used = (await session.execute(select(User.used_ms))).scalar_one()
    assert used == round(out["duration_seconds"] * 1000)


@backend_independent
@pytest.mark.parametrize(
    ("fault", "expected", "attempts"),
    [
        ({"kind": "http", "status": 502}, "upstream_unavailable", MAX_ATTEMPTS),
        ({"kind": "http", "status": 504}, "upstream_unavailable", MAX_ATTEMPTS),
        ({"kind": "http", "status": 429}, "upstream_busy", MAX_ATTEMPTS),
        ({"kind": "http", "status": 401}, "service_unavailable", 1),
        ({"kind": "http", "status": 402}, "service_unavailable", 1),  # MiniMax's envelope
        ({"kind": "http", "status": 422}, "content_rejected", 1),
        ({"kind": "http", "status": 404}, "upstream_rejected", 1),
        ({"kind": "malformed"}, "upstream_unavailable", MAX_ATTEMPTS),
        ({"kind": "truncated"}, "upstream_unavailable", MAX_ATTEMPTS),
        ({"kind": "disconnect"}, "upstream_unavailable", MAX_ATTEMPTS),
    ],
)
async def test_transport_faults(
    emu: Emulator,
    run_job: JobRunner,
    make_user: UserFactory,
    worker: Worker,
    fault: dict[str, Any],
    expected: str,
    attempts: int,
) -> None:
    _, key = await make_user()
    emu.add_fault({"endpoint": "t2a_v2", "times": 0, **fault})
    out = await run_job(api_key=key, text="Hello there.", voice="american-male")
    assert out["error"]["code"] == expected
    assert emu.stats()["requests"]["t2a_v2"] == attempts
    await assert_nothing_charged(worker, expected)
    emu.reset()
    await assert_recovers(run_job, key)


@backend_independent
async def test_a_slow_answer_times_out(
    emu: Emulator, make_settings: Callable[..., Settings]
) -> None:
    worker = Worker(make_settings(MINIMAX_TIMEOUT_SECONDS=0.3, MINIMAX_MAX_RETRIES=0))
    try:
        created = await accounts.create_user(
            worker.pipeline().sessions,
            name="Slow",
            email="slow@example.com",
            plan="free",
            pepper=worker.settings.pepper,
        )
        emu.add_fault({"endpoint": "t2a_v2", "kind": "delay", "seconds": 2, "times": 0})
        result = await worker.handle(
            {
                "id": "slow-1",
                "input": {
                    "api_key": created.key.plain,
                    "text": "Hello.",
                    "voice": "british-female",
                },
            }
        )
        assert json.loads(result["error"])["code"] == "upstream_unavailable"
        await assert_nothing_charged(worker, "upstream_unavailable")
    finally:
        await worker.aclose()


@backend_independent
async def test_wrong_minimax_key_is_our_problem_not_the_callers(
    make_settings: Callable[..., Settings], emu: Emulator
) -> None:
    worker = Worker(make_settings(MINIMAX_API_KEY="wrong-key"))
    try:
        created = await accounts.create_user(
            worker.pipeline().sessions,
            name="K",
            email="k@example.com",
            plan="free",
            pepper=worker.settings.pepper,
        )
        result = await worker.handle(
            {
                "id": "k-1",
                "input": {
                    "api_key": created.key.plain,
                    "text": "Hello.",
                    "voice": "british-female",
                },
            }
        )
        error = json.loads(result["error"])
        assert error["code"] == "service_unavailable" and error["status"] == 503
        assert "wrong-key" not in result["error"]
    finally:
        await worker.aclose()
