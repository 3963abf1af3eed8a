"""The benchmarks' callers: enterprise users whose limits never bind, a key each."""

from __future__ import annotations

from odeatts import accounts
from odeatts.db import Sessions
from odeatts.models import User

__all__ = ["UNLIMITED", "unlimited_keys"]

UNLIMITED = 1_000_000  # seconds a month, requests a minute, streams: never reached


async def unlimited_keys(sessions: Sessions, users: int, *, pepper: bytes) -> list[str]:
    """Create ``users`` such users; their plain API keys, in order."""
    keys = []
    for n in range(users):
        created = await accounts.create_user(
            sessions,
            name=f"Bench {n}",
            email=f"bench{n}@example.com",
            plan="enterprise",
            pepper=pepper,
        )
        async with sessions() as session, session.begin():
            user = await session.get(User, created.user.id)
            assert user is not None
            user.monthly_seconds_override = UNLIMITED
            user.rpm_override = UNLIMITED
            user.streams_override = UNLIMITED
        keys.append(created.key.plain)
    return keys
