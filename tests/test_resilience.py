"""Deadlines and breakers without any network: the rules of odeatts/resilience.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from odeatts.errors import ServiceUnavailable, Unauthorized
from odeatts.resilience import Breaker, Budget, Dependency, Gate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def dependency(breaker: Breaker | None = None, timeout: float = 0.2) -> Dependency:
    return Dependency(
        name="db",
        timeout=timeout,
        error=ServiceUnavailable,
        is_failure=lambda exc: isinstance(exc, (ServiceUnavailable, OSError)),
        breaker=breaker or Breaker("db", threshold=3, cooldown=1.0),
    )


async def broken() -> None:
    raise OSError("connection reset")


async def test_a_stalled_call_is_answered_at_its_deadline_not_when_it_gives_up() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(5)  # what psycopg does on a silent server (cancel, wait)
            raise

    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        await dependency(timeout=0.1).call(stubborn)
    assert time.monotonic() - started < 1.0


async def test_a_foreign_failure_becomes_the_dependencys_error() -> None:
    with pytest.raises(ServiceUnavailable) as caught:
        await dependency().call(broken)
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_callers_error_passes_through_and_does_not_count() -> None:
    breaker = Breaker("db", threshold=1)

    async def refuse() -> None:
        raise Unauthorized()

    with pytest.raises(Unauthorized):
        await dependency(breaker).call(refuse)
    assert breaker.failures == 0 and not breaker.is_open


async def test_the_job_budget_caps_every_deadline() -> None:
    clock = Clock()
    budget = Budget(10.0, clock=clock)
    clock.now += 10.0  # spent
    calls = []

    async def work() -> None:
        calls.append(1)

    with pytest.raises(ServiceUnavailable):
        await dependency(timeout=5).call(work, budget=budget)
    assert calls == []


async def test_the_breaker_opens_fails_fast_then_probes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="odeatts.resilience")
    clock = Clock()
    breaker = Breaker("postgres", threshold=3, cooldown=1.0, clock=clock)
    dep = dependency(breaker)
    for _ in range(3):
        with pytest.raises(ServiceUnavailable):
            await dep.call(broken)
    calls = []

    async def healthy() -> str:
        calls.append(1)
        return "ok"

    for _ in range(10):  # open: refused without trying
        with pytest.raises(ServiceUnavailable):
            await dep.call(healthy)
    assert calls == []
    clock.now += 1.0
    assert await dep.call(healthy) == "ok"  # the probe goes through, and closes it
    assert await dep.call(healthy) == "ok"

    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == ["WARNING", "ERROR", "INFO"]
    assert "3 consecutive failures" in messages[1][1]
    assert "3 failed calls, 10 refused" in messages[2][1]


async def test_a_failed_probe_keeps_the_breaker_open_for_another_cooldown() -> None:
    clock = Clock()
    breaker = Breaker("redis", threshold=1, cooldown=1.0, clock=clock)
    breaker.failure("x")
    clock.now += 1.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # others wait while it runs
    breaker.failure("still down")
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()


async def test_a_cancelled_caller_cancels_the_call() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(dependency(timeout=30).call(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 1)


# ------------------------------------------------------------------------ the gate
async def test_the_gate_serves_in_turn_and_work_that_finishes_a_job_first() -> None:
    gate = Gate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, urgent: bool = False) -> None:
        async with gate.turn(urgent=urgent):
            order.append(name)
            if name == "first":
                await release.wait()

    tasks = [asyncio.create_task(take("first"))]
    await asyncio.sleep(0)
    for name, urgent in (("reserve a", False), ("settle", True), ("reserve b", False)):
        tasks.append(asyncio.create_task(take(name, urgent)))
        await asyncio.sleep(0)
    assert gate.waiting == 3
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "settle", "reserve a", "reserve b"]
    assert gate.waiting == 0


async def test_a_waiter_cancelled_gives_its_turn_on_and_never_takes_two() -> None:
    gate = Gate(1)
    held = asyncio.Event()
    release = asyncio.Event()
    after: list[str] = []

    async def holder() -> None:
        async with gate.turn():
            held.set()
            await release.wait()

    async def waiter(name: str) -> None:
        async with gate.turn():
            after.append(name)

    first = asyncio.create_task(holder())
    await held.wait()
    leaving = asyncio.create_task(waiter("leaving"))
    staying = asyncio.create_task(waiter("staying"))
    await asyncio.sleep(0)
    release.set()
    leaving.cancel()  # its turn may already be granted: it must pass it on
    await asyncio.gather(first, leaving, staying, return_exceptions=True)
    assert after == ["staying"]
    async with gate.turn():  # one turn, free again: nothing leaked
        assert gate.waiting == 0


async def test_waiting_at_the_gate_is_bounded_by_the_budget_and_is_no_outage() -> None:
    breaker = Breaker("db", threshold=1)
    busy = Dependency(
        name="db",
        timeout=5.0,
        error=ServiceUnavailable,
        is_failure=lambda exc: isinstance(exc, OSError),
        breaker=breaker,
        gate=Gate(1),
    )
    release = asyncio.Event()
    holder = asyncio.create_task(busy.call(release.wait))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        await busy.call(release.wait, budget=Budget(0.1))
    assert time.monotonic() - started < 1.0
    assert not breaker.is_open  # our own queue says nothing about Postgres
    release.set()
    await holder
