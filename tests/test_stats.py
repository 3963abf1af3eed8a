"""``admin.py stats``: the figures of a ledger the test builds, on both backends (the
SQL is the point), in JSON, in Prometheus' format (parsed by its own client) and as
``--check`` breaches. Percentiles are Postgres' ``percentile_cont`` there and
``statistics.quantiles`` on SQLite: the same expected numbers hold both to one rule.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import Result

from odeatts import stats
from odeatts.billing import Prices
from odeatts.models import FAILED, REFUSED, SUCCEEDED, Voice, utcnow
from odeatts.worker import Worker
from tests.conftest import UserFactory
from tests.support.cli import Invoke
from tests.support.ledger import add_job
from tests.test_admin_cli import assert_operator_error

HOUR = dt.timedelta(hours=1)
PRICES = Prices(turbo_per_million=60.0, hd_per_million=100.0)


async def build_ledger(worker: Worker, make_user: UserFactory) -> dict[str, int]:
    """Ada (pro): 3 successes, an upstream failure, an account failure. Bo (basic): a
    success and the four refusals. Cy (free): 500 of 600 s used, no jobs. Older rows
    (2 h, 8 days) fall outside a 1 h window; clones expire in 36 h and in 12 h."""
    sessions = worker.pipeline().sessions
    ada, _ = await make_user("pro")
    bo, _ = await make_user("basic", used_ms=100_000)
    cy, _ = await make_user("free", used_ms=500_000)
    now = utcnow()
    at = now - dt.timedelta(minutes=30)
    ok = {"status": SUCCEEDED, "at": at}
    jobs: list[tuple[int, dict[str, Any]]] = [
        (
            ada,
            ok
            | {
                "duration_ms": 1000,
                "billed_characters": 100,
                "model": "speech-02-hd",
                "worker_ms": 100,
                "upstream_ms": 50,
            },
        ),
        (
            ada,
            ok
            | {"duration_ms": 2000, "billed_characters": 200, "worker_ms": 200, "upstream_ms": 150},
        ),
        (
            ada,
            ok
            | {"duration_ms": 3000, "billed_characters": 300, "worker_ms": 400, "upstream_ms": 350},
        ),
        (ada, {"status": FAILED, "at": at, "error_code": "upstream_unavailable"}),
        (
            ada,
            {
                "status": FAILED,
                "at": at,
                "error_code": "service_unavailable",
                "upstream_alert": "account",
            },
        ),
        (
            bo,
            ok
            | {"duration_ms": 4000, "billed_characters": 400, "worker_ms": 800, "upstream_ms": 700},
        ),
        (bo, {"status": REFUSED, "at": at, "error_code": "quota_exceeded"}),
        (bo, {"status": REFUSED, "at": at, "error_code": "rate_limited"}),
        (bo, {"status": REFUSED, "at": at, "error_code": "concurrency_limited"}),
        (bo, {"status": FAILED, "at": at, "error_code": "upstream_busy"}),
        (ada, ok | {"at": now - 2 * HOUR, "duration_ms": 9000, "worker_ms": 9000}),
        (bo, ok | {"at": now - dt.timedelta(days=8), "duration_ms": 9000}),
    ]
    for n, (user_id, columns) in enumerate(jobs):
        await add_job(sessions, user_id, f"ledger-{n}", **columns)
    async with sessions() as session, session.begin():
        for name, age in (("clone-soon", dt.timedelta(days=5.5)), ("clone-now", 6.5 * 24 * HOUR)):
            session.add(
                Voice(
                    name=name,
                    minimax_voice_id=f"Odea{name}01",
                    language="en",
                    gender="female",
                    kind="cloned",
                    created_at=now - age,
                )
            )
    return {"ada": ada, "bo": bo, "cy": cy}


async def test_the_figures_of_a_built_ledger(worker: Worker, make_user: UserFactory) -> None:
    users = await build_ledger(worker, make_user)
    found = await stats.collect(worker.pipeline().sessions, since=HOUR, prices=PRICES)
    assert found.outcomes == {"failed": 3, "refused": 3, "succeeded": 4}
    assert found.refusals == {"rate": 1, "concurrency": 1, "quota": 1, "upstream_busy": 1}
    assert found.refusal_rates()["quota"] == 0.1
    assert found.errors["upstream_unavailable"] == 1 and found.account_errors == 1
    assert found.error_rate == round(2 / 7, 4)  # upstream + account, of 7 not refused
    assert found.times_ms["worker"] == [300.0, 740.0, 788.0]
    assert found.times_ms["upstream"] == [250.0, 647.5, 689.5]
    assert (found.audio_ms, found.billed_characters) == (10_000, 1000)
    assert found.cost_usd == round((100 * 100 + 900 * 60) / 1e6, 6)
    assert found.seconds_by_plan == {"basic": 4.0, "pro": 6.0}
    assert [(u["user_id"], u["jobs"], u["seconds"]) for u in found.busiest] == [
        (users["ada"], 5, 6.0),
        (users["bo"], 5, 4.0),
    ]
    assert [(u["user_id"], u["share"]) for u in found.near_quota] == [(users["cy"], 0.8333)]
    assert [c["name"] for c in found.expiring_clones] == ["clone-now", "clone-soon"]
    day = await stats.collect(worker.pipeline().sessions, since=24 * HOUR, prices=PRICES)
    assert day.outcomes["succeeded"] == 5 and day.audio_ms == 19_000


async def test_one_users_figures(worker: Worker, make_user: UserFactory) -> None:
    users = await build_ledger(worker, make_user)
    found = await stats.collect(
        worker.pipeline().sessions, since=HOUR, prices=PRICES, user=str(users["bo"])
    )
    assert found.outcomes == {"failed": 1, "refused": 3, "succeeded": 1}
    assert found.times_ms["worker"] == [800.0, 800.0, 800.0]
    assert found.near_quota == [] and found.expiring_clones == []


async def cli(invoke: Invoke, *args: str) -> Result:
    return await asyncio.to_thread(invoke, "stats", *args)


async def test_json_and_prometheus_say_the_same(
    worker: Worker, make_user: UserFactory, invoke: Invoke
) -> None:
    await build_ledger(worker, make_user)
    as_json = await cli(invoke, "--since", "1h", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["jobs"]["total"] == 10 and data["audio_seconds"] == 10.0
    assert data["times_ms"]["worker"] == {"p50": 300.0, "p95": 740.0, "p99": 788.0}
    text = await cli(invoke, "--since", "1h", "--format", "prometheus")
    assert text.exit_code == 0, text.stderr
    families = {f.name: f for f in text_string_to_metric_families(text.stdout)}
    jobs = {s.labels["outcome"]: s.value for s in families["odeatts_jobs"].samples}
    assert jobs == {"failed": 3, "refused": 3, "succeeded": 4}
    assert all(s.labels["window"] == "1h" for f in families.values() for s in f.samples)
    worker_ms = {
        s.labels["quantile"]: s.value for s in families["odeatts_worker_milliseconds"].samples
    }
    assert worker_ms == {"0.5": 300.0, "0.95": 740.0, "0.99": 788.0}
    assert families["odeatts_minimax_account_errors"].samples[0].value == 1
    human = await cli(invoke, "--since", "1h")
    assert human.exit_code == 0 and "refused: quota" in human.stdout


async def test_check_prints_one_line_per_breach(
    worker: Worker, make_user: UserFactory, invoke: Invoke
) -> None:
    await build_ledger(worker, make_user)
    paged = await cli(invoke, "--since", "1h", "--check")
    assert paged.exit_code == 1
    lines = paged.stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("error rate 28.6% above 5.0%")
    assert lines[1].startswith("minimax account errors: 1")
    assert lines[2].startswith("clone clone-now expires")
    calm = await cli(
        invoke,
        "--since",
        "1h",
        "--check",
        "--max-error-rate",
        "0.5",
        "--max-account-errors",
        "1",
        "--clone-hours",
        "6",
    )
    assert (calm.exit_code, calm.stdout) == (0, "")


@pytest.mark.parametrize("since", ["1w", "0h", "91d", "h"])
def test_a_window_it_cannot_read_is_one_error_line(since: str, invoke: Invoke) -> None:
    assert_operator_error(invoke("stats", "--since", since), 2, "--since")
