"""Postgres or Redis unreachable: the job fails fast with service_unavailable, nothing
is charged and nothing is left held. No fail-open."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import select

from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import UserFactory

DEAD_PG = "postgresql://postgres@127.0.0.1:1/nowhere"
DEAD_REDIS = "redis://127.0.0.1:1/0"

# Production's backend only: the embedded one has no Redis to lose.
pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)


async def test_database_down_is_service_unavailable(make_settings: Callable[..., Settings]) -> None:
    worker = Worker(make_settings(DATABASE_URL=DEAD_PG))
    try:
        result = await worker.handle(
            {
                "id": "j",
                "input": {
                    "api_key": "odea_AAAAAAAA_" + "B" * 32,
                    "text": "Hi.",
                    "voice": "british-male",
                },
            }
        )
    finally:
        await worker.aclose()
    error = json.loads(result["error"])
    assert error["code"] == "service_unavailable" and error["status"] == 503
    assert "127.0.0.1" not in result["error"] and "psycopg" not in result["error"]


async def test_redis_down_refunds_the_reservation(
    make_settings: Callable[..., Settings], make_user: UserFactory, worker: Worker
) -> None:
    _, key = await make_user()
    broken = Worker(make_settings(REDIS_URL=DEAD_REDIS))
    try:
        result = await broken.handle(
            {"id": "r-1", "input": {"api_key": key, "text": "Hi.", "voice": "british-male"}}
        )
    finally:
        await broken.aclose()
    assert json.loads(result["error"])["code"] == "service_unavailable"
    async with worker.pipeline().sessions() as session:
        row = (await session.execute(select(Usage))).scalar_one()
        used = (await session.execute(select(User.used_ms))).scalar_one()
    assert (row.status, row.error_code, used) == ("failed", "service_unavailable", 0)
