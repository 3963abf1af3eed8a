"""Usage rows written straight into the ledger: what a worker left behind."""

from __future__ import annotations

import datetime as dt

from odeatts.db import Sessions
from odeatts.models import RESERVED, Usage, utcnow

__all__ = ["add_reservation"]


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
        session.add(
            Usage(
                job_id=job_id,
                user_id=user_id,
                api_key_id=1,
                voice="british-male",
                model="speech-02-turbo",
                text_chars=10,
                estimated_ms=estimated_ms,
                status=RESERVED,
                attempts=1,
                reserved_at=reserved_at or utcnow(),
            )
        )
