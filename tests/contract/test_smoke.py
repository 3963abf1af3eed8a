"""scripts/minimax_smoke.py, run as an operator runs it, against the emulator.

Against the emulator nothing differs from the fixtures: the script exits 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from minimax_emulator import Emulator
from scripts.localrun import ROOT
from tests.conftest import _ENV, EMULATOR_KEY

SCRIPT = ROOT / "scripts" / "minimax_smoke.py"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def smoke(url: str, key: str | None) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in _ENV}
    env["MINIMAX_BASE_URL"] = url
    if key is not None:
        env["MINIMAX_API_KEY"] = key
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def against_emulator(emulator: Emulator) -> Iterator[Run]:
    emulator.reset()
    yield smoke(emulator.url, EMULATOR_KEY)


def test_against_the_emulator_nothing_differs(against_emulator: Run) -> None:
    assert against_emulator.code == 0, against_emulator.out


def test_against_the_emulator_the_report_is_readable(against_emulator: Run) -> None:
    run = against_emulator
    assert run.code == 0, run.out + run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("MiniMax smoke test: http://127.0.0.1:")
    for call in ("synthesis", "stream", "get_voice"):
        assert any(line.startswith(f"  ok     {call}: ") for line in lines), run.out
    for compared in (
        "synthesis reply",
        "stream: one final event",
        "stream chunk events",
        "stream final events",
    ):
        assert any(line.startswith(f"  same   {compared}") for line in lines), run.out
    assert not [line for line in lines if line.startswith("           ")], run.out
    assert "final event's data.audio is empty" in run.out
    assert lines[-1] == "Result: nothing differs from the fixtures (exit 0)"
    assert EMULATOR_KEY not in run.out + run.err


def test_a_refused_key_is_a_failed_call_and_is_never_printed(emu: Emulator) -> None:
    key = "sk-smoke-test-not-the-key-0123456789"
    run = smoke(emu.url, key)
    assert run.code == 2, run.out + run.err
    assert "  FAILED synthesis: service_unavailable" in run.out
    assert run.out.splitlines()[-1] == "Result: a call failed (exit 2)"
    assert key not in run.out + run.err


def test_no_key_is_a_failed_call(emu: Emulator) -> None:
    run = smoke(emu.url, None)
    assert run.code == 2 and "MINIMAX_API_KEY is not set" in run.out
