"""Promises of docs/security.md that code keeps, other than throttling
(tests/test_auth_throttle.py) and the worker's database role (tests/test_worker_role.py).

No account enumeration: an unknown key, a revoked or expired one, a key of an inactive
account and malformed input get the same answer, on every action, on both backends
(the Postgres function of migration 0004 and the SQLite Python path), for the same
work (the same Postgres round trips, the equal-timing promise as far as a test can
keep it without a stopwatch).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

from odeatts.config import Settings
from odeatts.keys import _ALPHABET, generate_key, hash_key
from odeatts.models import ApiKey, User, utcnow
from odeatts.worker import Worker
from tests.conftest import JobRunner, UserFactory
from tests.support.proxy import TcpProxy

ACTIONS: list[dict[str, Any]] = [
    {"text": "Hello.", "voice": "british-male"},
    {"action": "voices"},
    {"action": "usage"},
]


async def bad_keys(worker: Worker, make_user: UserFactory) -> dict[str, str]:
    """One key of each kind that must be refused, each under its own prefix."""
    _, revoked = await make_user()
    _, expired = await make_user()
    inactive_id, inactive = await make_user()
    now = utcnow()
    async with worker.pipeline().sessions() as session, session.begin():
        for key, values in ((revoked, {"revoked_at": now}), (expired, {"expires_at": now})):
            await session.execute(update(ApiKey).where(ApiKey.prefix == key[:13]).values(**values))
        await session.execute(update(User).where(User.id == inactive_id).values(active=False))
    return {
        "unknown": f"odea_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}",
        "revoked": revoked,
        "expired": expired,
        "inactive": inactive,
        "malformed": "odea_short",
    }


async def test_every_refused_key_gets_the_same_answer_on_every_action(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    keys = await bad_keys(worker, make_user)
    for job in ACTIONS:
        answers = {kind: (await run_job(api_key=key, **job))["error"] for kind, key in keys.items()}
        assert all(answer == answers["unknown"] for answer in answers.values()), answers
        assert answers["unknown"] == {
            "code": "unauthorized",
            "message": "Missing or invalid API key.",
            "status": 401,
        }


async def test_an_unknown_voice_is_not_told_before_the_key_is_checked(
    run_job: JobRunner, make_user: UserFactory, worker: Worker
) -> None:
    """A wrong key learns nothing about voices either (401 before 404)."""
    keys = await bad_keys(worker, make_user)
    out = await run_job(api_key=keys["revoked"], text="Hello.", voice="no-such-voice")
    assert out["error"]["code"] == "unauthorized" and "voices" not in out["error"]


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_every_refused_key_costs_postgres_the_same(
    make_settings: Callable[..., Settings],
    pg_proxy: TcpProxy,
    make_user: UserFactory,
    worker: Worker,
) -> None:
    """Counted on the wire: one function call whatever made the key wrong."""
    keys = await bad_keys(worker, make_user)
    proxied = Worker(make_settings(DATABASE_URL=pg_proxy.url))
    try:

        async def trips(key: str) -> int:
            before = pg_proxy.round_trips
            job = {"id": f"e-{uuid.uuid4()}", "input": {"api_key": key, **ACTIONS[0]}}
            assert json.loads((await proxied.handle(job))["error"])["code"] == "unauthorized"
            return pg_proxy.round_trips - before

        await trips(keys["unknown"])  # warm: connections, the prepared statement
        await trips(keys["unknown"])
        costs = {kind: await trips(key) for kind, key in keys.items()}
        assert set(costs.values()) == {1}, costs
    finally:
        await proxied.aclose()


def test_a_key_has_190_bits_of_secret() -> None:
    """32 characters from 62 (secrets.choice): the figure docs/security.md relies on."""
    key = generate_key(b"pepper")
    secret = key.plain.split("_")[2]
    assert len(secret) == 32 and len(_ALPHABET) == 62
    assert 32 * math.log2(62) > 190
    assert key.hash not in key.plain and len(key.hash) == 64


def test_the_key_hash_needs_the_pepper() -> None:
    plain = "odea_AAAAAAAA_" + "b" * 32
    assert hash_key(plain, b"one pepper") != hash_key(plain, b"another pepper")
