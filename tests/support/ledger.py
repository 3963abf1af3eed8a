"""Usage rows written straight into the ledger: what a worker left behind, or a
ledger of finished jobs for the operators' reports to add up."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from odeatts.db import Sessions
from odeatts.models import RESERVED, ApiKey, Usage, utcnow

__all__ = ["add_job", "add_reservation"]


async def add_reservation(
    sessions: Sessions,
    user_id: int,
    job_id: str,
    estimated_ms: int,
    *,
    reserved_at: dt.datetime | None = None,
) -> None:
    """A ``reserved`` row, as a worker writes it at admission (and leaves it if it dies),
    reserved ``reserved_at`` (now by default)."""
    async with sessions() as session, session.begin():
        key_id = await _first_key(session, user_id)
        session.add(_row(job_id, user_id, key_id, estimated_ms, reserved_at or utcnow()))


async def add_job(
    sessions: Sessions,
    user_id: int,
    job_id: str,
    *,
    at: dt.datetime,
    status: str,
    **columns: Any,
) -> None:
    """A job as the worker leaves it finished (``status``, ``error_code``,
    ``duration_ms``, ``worker_ms``, ...), made ``at``, with the user's first key."""
    async with sessions() as session, session.begin():
        key_id = await _first_key(session, user_id)
        row = _row(job_id, user_id, key_id, columns.pop("estimated_ms", 1_000), at)
        row.status, row.settled_at = status, at
        for name, value in columns.items():
            setattr(row, name, value)
        session.add(row)


async def _first_key(session: AsyncSession, user_id: int) -> int:
    """The user's first key: a usage row's key is its user's own, as reserve writes it."""
    first = select(ApiKey.id).where(ApiKey.user_id == user_id).order_by(ApiKey.id).limit(1)
    return int((await session.execute(first)).scalar_one())


def _row(job_id: str, user_id: int, key_id: int, estimated_ms: int, at: dt.datetime) -> Usage:
    return Usage(
        job_id=job_id,
        user_id=user_id,
        api_key_id=key_id,
        voice="british-male",
        model="speech-02-turbo",
        text_chars=10,
        estimated_ms=estimated_ms,
        status=RESERVED,
        attempts=1,
        reserved_at=at,
        created_at=at,
    )
