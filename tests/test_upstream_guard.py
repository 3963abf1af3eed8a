"""The fleet-wide guard keeps us under our MiniMax account's RPM and TPM, retries
included. (Several processes at once: test_fleet.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from minimax_emulator import Emulator
from odeatts import accounts
from odeatts.config import Settings
from odeatts.worker import Worker


@pytest.fixture
async def guarded(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(**overrides: object) -> Worker:
        made.append(Worker(make_settings(ODEATTS_UPSTREAM_MAX_WAIT_SECONDS=0, **overrides)))
        return made[-1]

    yield make
    for w in made:
        await w.aclose()


async def speak(worker: Worker, key: str, text: str, job_id: str) -> dict[str, Any]:
    result = await worker.handle(
        {"id": job_id, "input": {"api_key": key, "text": text, "voice": "american-male"}}
    )
    return json.loads(result["error"]) if "error" in result else result


async def new_key(worker: Worker, n: int) -> str:
    created = await accounts.create_user(
        worker.pipeline().sessions,
        name=f"U{n}",
        email=f"u{n}@example.com",
        plan="pro",
        pepper=worker.settings.pepper,
    )
    return created.key.plain


async def test_account_rpm_is_shared_by_all_callers(
    guarded: Callable[..., Worker], emu: Emulator
) -> None:
    worker = guarded(MINIMAX_RPM_LIMIT=3)
    keys = [await new_key(worker, n) for n in range(2)]
    results = [await speak(worker, keys[i % 2], "Hello.", f"j{i}") for i in range(5)]
    codes = [r.get("code", "ok") for r in results]
    assert codes == ["ok", "ok", "ok", "upstream_busy", "upstream_busy"]
    assert all(0 < r["retry_after"] <= 60 for r in results[3:])
    assert emu.stats()["requests"]["t2a_v2"] == 3


async def test_account_tpm_counts_characters(guarded: Callable[..., Worker], emu: Emulator) -> None:
    worker = guarded(MINIMAX_TPM_LIMIT=60)
    key = await new_key(worker, 0)
    first = await speak(worker, key, "a" * 25 + " words here.", "t1")
    second = await speak(worker, key, "b" * 25 + " words here.", "t2")
    assert "code" not in first and second["code"] == "upstream_busy"
    assert emu.stats()["requests"]["t2a_v2"] == 1


async def test_retries_take_upstream_slots_too(
    guarded: Callable[..., Worker], emu: Emulator
) -> None:
    worker = guarded(MINIMAX_RPM_LIMIT=2, MINIMAX_MAX_RETRIES=3)
    key = await new_key(worker, 0)
    emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": 1002, "times": 0})
    out = await speak(worker, key, "Hello.", "r1")
    assert out["code"] == "upstream_busy"
    assert emu.stats()["requests"]["t2a_v2"] == 2  # not 4: the guard stopped the retries


async def test_a_busy_account_makes_jobs_wait_briefly_instead_of_failing(
    make_settings: Callable[..., Settings], emu: Emulator
) -> None:
    worker = Worker(make_settings(MINIMAX_TPM_LIMIT=40, ODEATTS_UPSTREAM_MAX_WAIT_SECONDS=120))
    try:
        key = await new_key(worker, 0)
        first = await speak(worker, key, "x" * 30, "w1")
        assert "code" not in first
        waiting = asyncio.create_task(speak(worker, key, "y" * 30, "w2"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # waiting for the window, not failed
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert emu.stats()["requests"]["t2a_v2"] == 1
    finally:
        await worker.aclose()
