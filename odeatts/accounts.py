"""Operators' data access: users and their API keys. Used by scripts/admin.py.

Small keyword-only functions; each opens its own short transaction so it is safe
to run while traffic flows. ``AdminError`` carries a message for the operator.

Nothing here touches the job path: a change is seen by a user's next job because
every job authenticates and loads its limits afresh (metering.reserve). What a plan
and its overrides allow is computed in allowance.py, for both. Writes change
only the columns they own (never ``used_ms``), so they cannot race the metering.
Keys: only the HMAC hash is stored; the plain key exists once, in the result of
``issue_key``/``rotate_key``/``create_user``. "Last used" is read from the usage
rows (the newest row of that key, by ``ix_usage_api_key_created``: one index probe per
key), so the job path needs no extra write.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

# LIMIT_NAMES and Limit are in __all__ too: operators' code names them through accounts.
from odeatts.allowance import (
    LIMIT_NAMES,
    OVERRIDE_COLUMNS,
    Limit,
    QuotaState,
    allowance_of,
    read_quota_state,
)
from odeatts.cycles import next_month
from odeatts.db import Sessions
from odeatts.errors import AdminError
from odeatts.keys import NewKey, generate_key, key_prefix, looks_like_key, looks_like_prefix
from odeatts.models import ApiKey, Plan, Usage, User, Voice, utcnow

__all__ = [
    "LIMIT_NAMES",
    "MAX_GRACE_SECONDS",
    "CreatedUser",
    "IssuedKey",
    "KeyView",
    "Limit",
    "LimitsChange",
    "PlanChange",
    "Revocation",
    "Rotation",
    "UserRow",
    "UserView",
    "VoiceChange",
    "create_user",
    "find_user",
    "issue_key",
    "key_dict",
    "key_state",
    "limits_dict",
    "list_keys",
    "list_users",
    "next_month",
    "revoke_key",
    "rotate_key",
    "set_active",
    "set_cache_global",
    "set_default_voice",
    "set_limits",
    "set_plan",
    "show_user",
    "user_dict",
    "user_view_dict",
]


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INT_MAX = 2**31 - 1  # the columns are 32-bit integers
_LABEL_MAX = 100
_ROTATED = " (rotated)"

# A rotation's grace is for callers to redeploy with the new key, not a way to keep a
# leaked key alive: longer than a month is almost certainly a typo (seconds vs minutes).
MAX_GRACE_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class CreatedUser:
    user: User
    key: NewKey


@dataclass(frozen=True)
class KeyView:
    """A key as operators see it: never the key, never its hash."""

    id: int
    user_id: int
    prefix: str
    label: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None
    state: str


@dataclass(frozen=True)
class UserView:
    user: User
    plan: Plan
    quota: QuotaState
    keys: list[KeyView]

    @property
    def limits(self) -> dict[str, Limit]:
        return self.quota.allowance.limits


@dataclass(frozen=True)
class VoiceChange:
    user: User
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.previous != self.user.default_voice


@dataclass(frozen=True)
class UserRow:
    user: User
    limits: dict[str, Limit]
    active_keys: int


@dataclass(frozen=True)
class PlanChange:
    user: User
    previous: str
    limits: dict[str, Limit]

    @property
    def changed(self) -> bool:
        return self.previous != self.user.plan_id


@dataclass(frozen=True)
class LimitsChange:
    user: User
    previous: dict[str, Limit]
    limits: dict[str, Limit]


@dataclass(frozen=True)
class IssuedKey:
    user: User
    key: KeyView
    plain: str  # shown once, never stored


@dataclass(frozen=True)
class Revocation:
    key: KeyView
    already: bool


@dataclass(frozen=True)
class Rotation:
    old: KeyView
    new: IssuedKey


# --- pure helpers --------------------------------------------------------------------------


def key_state(
    *, revoked_at: dt.datetime | None, expires_at: dt.datetime | None, now: dt.datetime
) -> str:
    """active, revoked, expiring (works until ``expires_at``) or expired."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is None:
        return "active"
    return "expiring" if expires_at > now else "expired"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def user_dict(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "plan": user.plan_id,
        "active": user.active,
        "used_seconds": user.used_ms / 1000,
        "cycle_start": user.cycle_start.isoformat(),
        "cycle_end": user.cycle_end.isoformat(),
        "overrides": {
            "monthly_seconds": user.monthly_seconds_override,
            "rpm": user.rpm_override,
            "concurrent_streams": user.streams_override,
        },
    }


def limits_dict(limits: dict[str, Limit]) -> dict[str, object]:
    return {name: {"value": limit.value, "source": limit.source} for name, limit in limits.items()}


def key_dict(key: KeyView) -> dict[str, object]:
    return {
        "id": key.id,
        "user_id": key.user_id,
        "prefix": key.prefix,
        "label": key.label,
        "created_at": _iso(key.created_at),
        "last_used_at": _iso(key.last_used_at),
        "state": key.state,
        "revoked_at": _iso(key.revoked_at),
        "expires_at": _iso(key.expires_at),
    }


def user_view_dict(view: UserView) -> dict[str, object]:
    user, allowance, quota = view.user, view.quota.allowance, view.quota.quota
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "plan": user.plan_id,
        "active": user.active,
        "created_at": _iso(user.created_at),
        "default_voice": user.default_voice,
        "limits": limits_dict(allowance.limits),
        "quota": {
            "limit_seconds": allowance.monthly_seconds.value,
            "credit_seconds": allowance.credit_ms / 1000,
            "total_seconds": quota.quota_ms / 1000,
            "used_seconds": quota.used_ms / 1000,
            "reserved_seconds": quota.reserved_ms / 1000,
            "remaining_seconds": quota.remaining_ms / 1000,
        },
        "cycle": {"start": _iso(user.cycle_start), "end": _iso(user.cycle_end)},
        "keys": [key_dict(key) for key in view.keys],
    }


def _label(label: str | None) -> str | None:
    if label is None:
        return None
    label = label.strip()
    if not label or len(label) > _LABEL_MAX:
        raise AdminError(f"a label must be 1 to {_LABEL_MAX} characters")
    return label


def _rotated_label(label: str | None) -> str:
    base = (label or "").removesuffix(_ROTATED)  # rotating twice must not stack suffixes
    return (base[: _LABEL_MAX - len(_ROTATED)] + _ROTATED).strip()


def _id(value: int) -> int:
    """An id the database can compare: out of range is no row (ids start at 1), not an error."""
    return value if 0 < value <= _INT_MAX else 0


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and not 0 < value <= _INT_MAX:
        raise AdminError(f"{name} must be a positive integer (at most {_INT_MAX}), got {value}")
    return value


# --- lookups inside a session --------------------------------------------------------------


async def find_user(session: AsyncSession, ref: str, *, lock: bool = False) -> User:
    """``--user``: a user by id or by email (emails are stored lower-case, so this uses
    the index). The one lookup every admin command shares."""
    ref = ref.strip()
    if ref.isascii() and ref.isdigit():
        what, match = f"id {ref}", User.id == _id(int(ref))
    else:
        what, match = f"email {ref!r}", User.email == ref.lower()
    stmt = select(User).where(match)
    found = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if found is None:
        raise AdminError(f"no user with {what}")
    return found


async def _plan(session: AsyncSession, plan_id: str) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        order = (Plan.price_cents.is_(None), Plan.price_cents, Plan.id)
        plans = (await session.execute(select(Plan.id).order_by(*order))).scalars().all()
        raise AdminError(f"unknown plan {plan_id!r}; plans: {', '.join(plans)}")
    return plan


async def _user_plan(session: AsyncSession, user: User) -> Plan:
    plan = await session.get(Plan, user.plan_id)
    assert plan is not None  # a foreign key
    return plan


def _view(key: ApiKey, last_used: dt.datetime | None, now: dt.datetime) -> KeyView:
    return KeyView(
        id=key.id,
        user_id=key.user_id,
        prefix=key.prefix,
        label=key.label,
        created_at=key.created_at,
        last_used_at=last_used,
        revoked_at=key.revoked_at,
        expires_at=key.expires_at,
        state=key_state(revoked_at=key.revoked_at, expires_at=key.expires_at, now=now),
    )


async def _last_used(session: AsyncSession, key_ids: list[int]) -> dict[int, dt.datetime]:
    """Each key's last use: its newest usage row, one probe of ``ix_usage_api_key_created``
    per key, in one statement. The key ids are written as literals (integers): planned
    with the real values, whose statistics know a big customer's keys, never for an
    average key (a parameter or a join may read all of a key's rows to find its newest)."""
    if not key_ids:
        return {}
    newest: list[Any] = [
        select(
            literal_column(str(int(key))).label("key_id"),
            select(Usage.created_at)
            .where(Usage.api_key_id == literal_column(str(int(key))))
            .order_by(Usage.created_at.desc())
            .limit(1)
            .scalar_subquery()
            .label("last_used"),
        )
        for key in key_ids
    ]
    rows = await session.execute(union_all(*newest))
    return {int(key): last for key, last in rows if last is not None}


async def _key_views(session: AsyncSession, user_id: int, now: dt.datetime) -> list[KeyView]:
    keys = (
        (await session.execute(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)))
        .scalars()
        .all()
    )
    last = await _last_used(session, [key.id for key in keys])
    return [_view(key, last.get(key.id), now) for key in keys]


async def _key_view(session: AsyncSession, key: ApiKey, now: dt.datetime) -> KeyView:
    return _view(key, (await _last_used(session, [key.id])).get(key.id), now)


async def _key(session: AsyncSession, *, prefix: str | None, key_id: int | None) -> ApiKey:
    """One key by ``prefix`` or by ``id`` (exactly one of them), locked for the change."""
    if (prefix is None) == (key_id is None):
        raise AdminError("name the key by exactly one of --prefix or --id")
    if key_id is not None:
        found = (
            (
                await session.execute(
                    select(ApiKey).where(ApiKey.id == _id(key_id)).with_for_update()
                )
            )
            .scalars()
            .all()
        )
        what = f"id {key_id}"
    else:
        prefix = _prefix(prefix or "")
        found = (
            (
                await session.execute(
                    select(ApiKey)
                    .where(ApiKey.prefix == prefix)
                    .order_by(ApiKey.id)
                    .with_for_update()
                )
            )
            .scalars()
            .all()
        )
        what = f"prefix {prefix}"
    if not found:
        raise AdminError(f"no key with {what}")
    if len(found) > 1:
        ids = ", ".join(str(k.id) for k in found)
        raise AdminError(f"{len(found)} keys share the {what} (ids {ids}); use --id")
    return found[0]


def _prefix(value: str) -> str:
    value = value.strip()
    if looks_like_key(value):  # a leaked key pasted whole: its prefix names it
        return key_prefix(value)
    if not looks_like_prefix(value):
        raise AdminError(f"not a key prefix: {value!r} (expected odea_ and 8 letters or digits)")
    return value


# --- users ---------------------------------------------------------------------------------


async def create_user(
    sessions: Sessions,
    *,
    name: str,
    email: str,
    plan: str,
    pepper: bytes,
    now: dt.datetime | None = None,
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
            await _plan(session, plan)
            user = User(
                name=name.strip(),
                email=email,
                plan_id=plan,
                active=True,
                used_ms=0,
                cycle_start=now,
                cycle_end=next_month(now),
                created_at=now,
            )
            session.add(user)
            await session.flush()
            session.add(
                ApiKey(
                    user_id=user.id,
                    prefix=key.prefix,
                    key_hash=key.hash,
                    created_at=now,
                    label="first key",
                )
            )
    except IntegrityError as exc:
        raise AdminError(f"a user with email {email!r} already exists") from exc
    return CreatedUser(user=user, key=key)


async def show_user(
    sessions: Sessions, *, user: str, lease_ttl: dt.timedelta, now: dt.datetime | None = None
) -> UserView:
    """Everything an operator asks about one user, read in one short transaction."""
    now = now or utcnow()
    async with sessions() as session:
        found = await find_user(session, user)
        plan = await _user_plan(session, found)
        quota = await read_quota_state(session, found, plan, now=now, lease_ttl=lease_ttl)
        keys = await _key_views(session, found.id, now)
    return UserView(user=found, plan=plan, quota=quota, keys=keys)


async def list_users(
    sessions: Sessions,
    *,
    plan: str | None = None,
    active: bool | None = None,
    now: dt.datetime | None = None,
) -> list[UserRow]:
    now = now or utcnow()
    working = (
        select(ApiKey.user_id, func.count().label("n"))
        .where(
            ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
        )
        .group_by(ApiKey.user_id)
        .subquery()
    )
    stmt = (
        select(User, Plan, func.coalesce(working.c.n, 0))
        .join(Plan)
        .outerjoin(working, working.c.user_id == User.id)
        .order_by(User.id)
    )
    if active is not None:
        stmt = stmt.where(User.active.is_(active))
    async with sessions() as session:
        if plan is not None:
            await _plan(session, plan)
            stmt = stmt.where(User.plan_id == plan)
        rows = (await session.execute(stmt)).all()
    return [
        UserRow(user=u, limits=allowance_of(u, p).limits, active_keys=int(n)) for u, p, n in rows
    ]


async def set_plan(sessions: Sessions, *, user: str, plan: str) -> PlanChange:
    """Move a user to ``plan``; their next job is admitted (or refused) by it."""
    async with sessions() as session, session.begin():
        found = await find_user(session, user, lock=True)
        new = await _plan(session, plan)
        previous, found.plan_id = found.plan_id, new.id
    return PlanChange(user=found, previous=previous, limits=allowance_of(found, new).limits)


async def set_limits(
    sessions: Sessions,
    *,
    user: str,
    monthly_seconds: int | None = None,
    rpm: int | None = None,
    streams: int | None = None,
    clear: bool = False,
) -> LimitsChange:
    """Set some per-user overrides (the rest stay as they are), or clear them all."""
    given = {
        "monthly_seconds": _positive("--monthly-seconds", monthly_seconds),
        "rpm": _positive("--rpm", rpm),
        "concurrent_streams": _positive("--streams", streams),
    }
    given = {name: value for name, value in given.items() if value is not None}
    if clear == bool(given):
        raise AdminError("give --clear alone, or any of --monthly-seconds, --rpm, --streams")
    async with sessions() as session, session.begin():
        found = await find_user(session, user, lock=True)
        plan = await _user_plan(session, found)
        previous = allowance_of(found, plan).limits
        for name in LIMIT_NAMES if clear else given:
            setattr(found, OVERRIDE_COLUMNS[name], given.get(name))
    return LimitsChange(user=found, previous=previous, limits=allowance_of(found, plan).limits)


async def set_default_voice(sessions: Sessions, *, user: str, voice: str | None) -> VoiceChange:
    """The voice the user's jobs without ``voice`` use (None: none, such jobs are refused).

    Checked against the active catalogue now; a voice deactivated later makes those
    jobs ``voice_not_found`` until an operator sets another."""
    async with sessions() as session, session.begin():
        if voice is not None:
            await _active_voice(session, voice)
        found = await find_user(session, user, lock=True)
        previous = found.default_voice
        found.default_voice = voice
    return VoiceChange(user=found, previous=previous)


async def set_cache_global(sessions: Sessions, *, user: str, shared: bool) -> User:
    """Share the user's cached audio with every user marked so (their prompts are
    public), or keep it theirs; applies from the user's next job."""
    async with sessions() as session, session.begin():
        found = await find_user(session, user, lock=True)
        found.cache_global = shared
    return found


async def _active_voice(session: AsyncSession, name: str) -> None:
    names = (
        (await session.execute(select(Voice.name).where(Voice.active).order_by(Voice.name)))
        .scalars()
        .all()
    )
    if name not in names:
        raise AdminError(f"no active voice named {name!r}; active voices: {', '.join(names)}")


async def set_active(sessions: Sessions, *, user: str, active: bool) -> tuple[User, bool]:
    """Activate or deactivate; returns the user and whether anything changed."""
    async with sessions() as session, session.begin():
        found = await find_user(session, user, lock=True)
        changed = found.active is not active
        found.active = active
    return found, changed


# --- keys ----------------------------------------------------------------------------------


async def _add_key(
    session: AsyncSession, *, user_id: int, label: str | None, pepper: bytes, now: dt.datetime
) -> tuple[ApiKey, NewKey]:
    new = generate_key(pepper)
    row = ApiKey(user_id=user_id, prefix=new.prefix, key_hash=new.hash, label=label, created_at=now)
    session.add(row)
    await session.flush()
    return row, new


async def issue_key(
    sessions: Sessions,
    *,
    user: str,
    pepper: bytes,
    label: str | None = None,
    now: dt.datetime | None = None,
) -> IssuedKey:
    """Another key for ``user``; the plain key exists only in the result."""
    label, now = _label(label), now or utcnow()
    async with sessions() as session, session.begin():
        found = await find_user(session, user)
        row, new = await _add_key(session, user_id=found.id, label=label, pepper=pepper, now=now)
    return IssuedKey(user=found, key=_view(row, None, now), plain=new.plain)


async def list_keys(
    sessions: Sessions, *, user: str, now: dt.datetime | None = None
) -> tuple[User, list[KeyView]]:
    now = now or utcnow()
    async with sessions() as session:
        found = await find_user(session, user)
        return found, await _key_views(session, found.id, now)


async def revoke_key(
    sessions: Sessions,
    *,
    prefix: str | None = None,
    key_id: int | None = None,
    now: dt.datetime | None = None,
) -> Revocation:
    """Revoke at once; revoking a revoked key changes nothing (``already``)."""
    now = now or utcnow()
    async with sessions() as session, session.begin():
        key = await _key(session, prefix=prefix, key_id=key_id)
        already = key.revoked_at is not None
        if not already:
            key.revoked_at = now
        view = await _key_view(session, key, now)
    return Revocation(key=view, already=already)


async def rotate_key(
    sessions: Sessions,
    *,
    pepper: bytes,
    prefix: str | None = None,
    key_id: int | None = None,
    grace_seconds: int = 0,
    now: dt.datetime | None = None,
) -> Rotation:
    """A new key for the same user; the old one stops at once (grace 0) or after the grace.

    One transaction: either both happen or neither. A key is rotated once: rotating a
    revoked, expired or already expiring key is refused, so running it twice is harmless.
    """
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise AdminError(f"--grace must be 0 to {MAX_GRACE_SECONDS} seconds, got {grace_seconds}")
    now = now or utcnow()
    async with sessions() as session, session.begin():
        old = await _key(session, prefix=prefix, key_id=key_id)
        _refuse_rotation(old, now)
        if grace_seconds:
            old.expires_at = now + dt.timedelta(seconds=grace_seconds)
        else:
            old.revoked_at = now
        row, new = await _add_key(
            session, user_id=old.user_id, label=_rotated_label(old.label), pepper=pepper, now=now
        )
        owner = await session.get(User, old.user_id)
        assert owner is not None
        old_view = await _key_view(session, old, now)
    issued = IssuedKey(user=owner, key=_view(row, None, now), plain=new.plain)
    return Rotation(old=old_view, new=issued)


def _refuse_rotation(key: ApiKey, now: dt.datetime) -> None:
    state = key_state(revoked_at=key.revoked_at, expires_at=key.expires_at, now=now)
    if state in ("revoked", "expired"):
        raise AdminError(f"key {key.prefix} is {state}; issue a new one with `keys issue`")
    if state == "expiring":
        assert key.expires_at is not None
        raise AdminError(
            f"key {key.prefix} was already rotated and works until "
            f"{key.expires_at.isoformat()}; revoke it to end that now"
        )
