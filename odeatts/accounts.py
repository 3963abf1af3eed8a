"""Operators' data access: users, keys and voices. Used by scripts/admin.py.

Small keyword-only functions; each opens its own short transaction so it is safe
to run while traffic flows. ``AdminError`` carries a message for the operator.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odeatts.errors import AdminError
from odeatts.keys import NewKey, generate_key
from odeatts.models import ApiKey, Plan, User, Voice, utcnow

__all__ = ["CreatedUser", "add_voice", "create_user", "next_month", "user_dict"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_VOICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")


@dataclass(frozen=True)
class CreatedUser:
    user: User
    key: NewKey


def next_month(start: dt.datetime) -> dt.datetime:
    """The same day and time next month, clamped to the month's last day."""
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    for day in range(start.day, 27, -1):
        try:
            return start.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return start.replace(year=year, month=month, day=min(start.day, 28))


def user_dict(user: User) -> dict[str, object]:
    return {
        "id": user.id, "name": user.name, "email": user.email, "plan": user.plan_id,
        "active": user.active, "used_seconds": user.used_ms / 1000,
        "cycle_start": user.cycle_start.isoformat(), "cycle_end": user.cycle_end.isoformat(),
        "overrides": {"monthly_seconds": user.monthly_seconds_override,
                      "rpm": user.rpm_override, "concurrent_streams": user.streams_override},
    }


async def create_user(
    sessions: async_sessionmaker[AsyncSession], *, name: str, email: str, plan: str,
    pepper: bytes, now: dt.datetime | None = None,
) -> CreatedUser:
    """A user on ``plan`` with a first API key; the plain key exists only in the result."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise AdminError(f"not an email address: {email!r}")
    if not name.strip():
        raise AdminError("name must not be empty")
    now = now or utcnow()
    key = generate_key(pepper)
    try:
        async with sessions() as session, session.begin():
            if await session.get(Plan, plan) is None:
                plans = (await session.execute(select(Plan.id))).scalars().all()
                raise AdminError(f"unknown plan {plan!r}; plans: {', '.join(plans)}")
            user = User(name=name.strip(), email=email, plan_id=plan, active=True, used_ms=0,
                        cycle_start=now, cycle_end=next_month(now), created_at=now)
            session.add(user)
            await session.flush()
            session.add(ApiKey(user_id=user.id, prefix=key.prefix, key_hash=key.hash,
                               created_at=now, label="first key"))
    except IntegrityError as exc:
        raise AdminError(f"a user with email {email!r} already exists") from exc
    return CreatedUser(user=user, key=key)


async def add_voice(
    sessions: async_sessionmaker[AsyncSession], *, name: str, minimax_voice_id: str,
    language: str, gender: str, kind: str = "system", description: str | None = None,
    language_boost: str | None = None,
) -> Voice:
    if not _VOICE_NAME.match(name):
        raise AdminError("voice name must be 3-64 lowercase letters, digits and dashes")
    if gender not in ("male", "female", "neutral"):
        raise AdminError("gender must be male, female or neutral")
    voice = Voice(name=name, minimax_voice_id=minimax_voice_id, language=language,
                  gender=gender, kind=kind, description=description,
                  language_boost=language_boost, active=True, created_at=utcnow())
    try:
        async with sessions() as session, session.begin():
            session.add(voice)
    except IntegrityError as exc:
        raise AdminError(f"a voice named {name!r} already exists") from exc
    return voice
