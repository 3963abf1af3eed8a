"""Job-path metering: authenticate a key and reserve seconds, then settle or release.

On Postgres a speech job costs one round trip to reserve and one to settle (or to
release), measured on the wire by tests/test_round_trips.py. The operators' side of the
quota (credits, resets, reports) is billing.py.

``reserve``  authenticates the key, locks the caller's user row, sums the caller's live
             reservations and inserts the job's usage row, as ``reserved`` when the
             estimate fits or ``refused`` when it does not. The usage row is unique on
             the RunPod job id: a job delivered twice finds its row and is never charged
             twice; one whose earlier attempt died, failed or was refused takes the row
             over (``attempts`` + 1). A job without a voice gets the user's default
             voice here, where the user row is read anyway.
``settle``   moves the real duration into ``used_ms`` and marks the row ``succeeded``,
             only if the row is still this attempt's and open; it records the job's
             times (worker, MiniMax) for ``stats``.
``release``  marks the row ``failed``/``refused``; nothing was charged.

Two implementations, one behaviour (tests/test_reserve_rules.py runs on both):

Postgres     ``odeatts_reserve2`` and ``odeatts_settle3`` (PL/pgSQL, migrations 0004,
             0006 and 0010) and
             one UPDATE for release, each a single prepared statement in autocommit on
             psycopg's own connection (db.autocommit): no ORM, no BEGIN/COMMIT, no pool
             reset. A transaction of several statements costs a round trip each; a
             function does the same work under the same row locks in one.
SQLite       the Python path (ORM, ``BEGIN IMMEDIATE``): the embedded database is in
             process, where a round trip costs nothing, and has no server-side
             functions.

Both rules the function needs are kept in one Python home each. The quota arithmetic
(allowance.py) had to be written in SQL too, for the function to decide and insert in
one call; tests/test_reserve_sql.py holds the two to the same answers. The cycle roll
is not: a user whose cycle has ended gets ``roll`` from the function and takes the
Python path, which rolls it with cycles.py under the user's row lock, once a month per
user, at the price of one more transaction. Reserved seconds are never a counter a
crashed worker could leave behind: they are the user's live reservations, so a dead
worker's reservation lapses by itself when its lease does.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Select,
    Update,
    and_,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from odeatts.allowance import (
    Allowance,
    Limit,
    QuotaView,
    allowance_of,
    live_after,
    live_reserved_ms,
)
from odeatts.cycles import roll_ended_cycle
from odeatts.db import (
    Sessions,
    autocommit,
    database_errors,
    engine_of,
    insert_for,
    on_postgres,
    reading,
)
from odeatts.errors import DuplicateJob, InvalidRequest, QuotaExceeded, Unauthorized
from odeatts.models import (
    FAILED,
    REFUSED,
    RESERVED,
    SUCCEEDED,
    ApiKey,
    Plan,
    Pronunciation,
    Usage,
    User,
)
from odeatts.outbox import Charge, Outbox

__all__ = [
    "Caller",
    "JobMeta",
    "Reservation",
    "abandon_stale",
    "authenticate",
    "drain_outbox",
    "prepare_job_path",
    "recent_usage",
    "recent_usage_query",
    "release",
    "reserve",
    "settle",
    "settle_deferred",
    "user_pronunciations",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller, the limits that apply to them now and what they used."""

    user_id: int
    api_key_id: int
    allowance: Allowance
    used_ms: int


@dataclass(frozen=True, slots=True)
class JobMeta:
    """What the usage row records about a job before synthesis (``voice`` None: the
    user's default voice)."""

    job_id: str
    voice: str | None
    model: str
    text_chars: int
    estimated_ms: int


@dataclass(frozen=True, slots=True)
class Reservation:
    usage_id: int
    attempt: int
    caller: Caller
    estimated_ms: int
    voice: str  # the job's, or the user's default
    # The user's saved pronunciations, read with the reservation (no round trip of its own).
    pronunciations: dict[str, str] = field(default_factory=dict)
    # An operator shared this user's cached audio with every user (``cache share``).
    shared_cache: bool = False


def _caller_query(key_hash: str, *, now: dt.datetime, lock: bool) -> Select[int, User, Plan]:
    stmt = (
        select(ApiKey.id, User, Plan)
        .join(User, User.id == ApiKey.user_id)
        .join(Plan, Plan.id == User.plan_id)
        .where(
            ApiKey.key_hash == key_hash,
            ApiKey.revoked_at.is_(None),
            User.active.is_(True),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
    )
    return stmt.with_for_update(of=User) if lock else stmt


async def _load_caller_and_user(
    session: AsyncSession, key_hash: str, *, now: dt.datetime, lock: bool
) -> tuple[Caller, User]:
    """The caller, and their user row as loaded (its default voice and cache scope are
    read from it, not asked for again)."""
    row = (await session.execute(_caller_query(key_hash, now=now, lock=lock))).first()
    if row is None:
        raise Unauthorized()
    api_key_id, user, plan = row[0], row[1], row[2]
    if lock and await roll_ended_cycle(session, user, plan, now=now) is not None:
        # The scheduled reset has not reached this user yet: their new month starts
        # with this job, not an hour late (two statements, once a month per user).
        log.info("user %s: ended cycle rolled over by a job", user.id)
    caller = Caller(
        user_id=user.id,
        api_key_id=api_key_id,
        allowance=allowance_of(user, plan),
        used_ms=user.used_ms,
    )
    return caller, user


async def authenticate(sessions: Sessions, *, key_hash: str, now: dt.datetime) -> Caller:
    """Read-only authentication, for actions that reserve nothing."""
    with database_errors():
        async with reading(sessions) as session:
            caller, _ = await _load_caller_and_user(session, key_hash, now=now, lock=False)
            return caller


async def reserve(
    sessions: Sessions,
    *,
    key_hash: str,
    job: JobMeta,
    now: dt.datetime,
    stale_after: dt.timedelta,
) -> Reservation:
    """Authenticate and reserve ``job.estimated_ms``: one round trip on Postgres.

    Raises Unauthorized, QuotaExceeded (after recording a ``refused`` row), DuplicateJob,
    or InvalidRequest (``voice``) when the job names no voice and the user has no default.
    A user whose cycle has ended (once a month) takes the Python path, which rolls it.
    """
    engine = engine_of(sessions)
    decided = None
    if on_postgres(engine):
        decided = await _reserve_in_postgres(engine, key_hash, job, now, stale_after)
    if decided is None:
        decided = await _reserve_in_python(sessions, key_hash, job, now, stale_after)
    caller, view, fits, usage_id, attempt, voice, words, shared = decided
    if not fits:
        raise QuotaExceeded(
            f"This job needs about {job.estimated_ms / 1000:.1f} s of audio; "
            f"{view.remaining_ms / 1000:.1f} s are left this cycle.",
            details={
                "remaining_seconds": view.remaining_ms / 1000,
                "estimated_seconds": job.estimated_ms / 1000,
            },
        )
    return Reservation(
        usage_id=usage_id,
        attempt=attempt,
        caller=caller,
        estimated_ms=job.estimated_ms,
        voice=voice,
        pronunciations=words,
        shared_cache=shared,
    )


def _no_voice() -> InvalidRequest:
    return InvalidRequest(
        "Give `voice`: this account has no default voice (an operator sets one).",
        details={"field": "voice"},
    )


# What a reservation decided: the caller, their quota (live reservations included, this
# job not), whether the job fits, its usage row and attempt, the job's voice, the
# user's saved pronunciations and whether their cached audio is shared.
_Decided = tuple[Caller, QuotaView, bool, int, int, str, dict[str, str], bool]

# One statement, prepared once per connection; the function is migration 0006's. The
# user's pronunciations (migration 0007) ride along as one more column: a sub-select on
# their unique (user_id, word) index, run after the function in the same statement, so
# the job pays no round trip for them and sees an operator's change at its next job.
# The user's ``cache_global`` (migration 0010) rides along the same way, by primary key.
_RESERVE_SQL = (
    "SELECT r.*, (SELECT json_object_agg(p.word, p.pronunciation) FROM pronunciations p"
    " WHERE p.user_id = r.user_id), (SELECT u.cache_global FROM users u"
    " WHERE u.id = r.user_id) FROM odeatts_reserve2(%s, %s, %s, %s, %s, %s, %s, %s) r"
)


async def _reserve_in_postgres(
    engine: AsyncEngine,
    key_hash: str,
    job: JobMeta,
    now: dt.datetime,
    stale_after: dt.timedelta,
) -> _Decided | None:
    """``odeatts_reserve2``: None when the user's cycle has ended (roll it in Python)."""
    params = (
        key_hash,
        job.job_id,
        job.voice,
        job.model,
        job.text_chars,
        job.estimated_ms,
        now,
        live_after(now, stale_after),
    )
    with database_errors():
        async with autocommit(engine) as pg:
            cursor = await pg.execute(_RESERVE_SQL, params, prepare=True)
            row = await cursor.fetchone()
    assert row is not None  # the function always returns one row
    (outcome, usage_id, attempt, user_id, api_key_id, plan_id) = row[:6]
    (plan_s, override_s, plan_rpm, override_rpm, plan_streams, override_streams) = row[6:12]
    credit_ms, used_ms, reserved_ms, voice, words, shared = row[12:18]
    if outcome == "unauthorized":
        raise Unauthorized()
    if outcome == "roll":
        return None
    if outcome == "no_voice":
        raise _no_voice()
    if outcome == "completed":
        raise DuplicateJob(details={"job_status": "completed"})
    if outcome == "in_progress":
        raise _in_progress()
    caller = Caller(
        user_id=user_id,
        api_key_id=api_key_id,
        allowance=Allowance(
            plan_id=plan_id,
            monthly_seconds=Limit(plan_s, override_s),
            rpm=Limit(plan_rpm, override_rpm),
            concurrent_streams=Limit(plan_streams, override_streams),
            credit_ms=credit_ms,
        ),
        used_ms=used_ms,
    )
    view = caller.allowance.quota(used_ms=used_ms, reserved_ms=reserved_ms)
    decided = (caller, view, outcome == RESERVED, usage_id, attempt, voice, words or {})
    return *decided, bool(shared)


async def prepare_job_path(engine: AsyncEngine, now: dt.datetime) -> None:
    """Prepare the reservation's and the settle's statements on one pooled Postgres
    connection (a worker's warm-up does it on each), so that no job pays for it.

    psycopg prepares a statement on its first use on a connection, one round trip of
    its own, and Postgres compiles a PL/pgSQL function on its first call in a session:
    with the pool's five connections taken in turn, the first jobs after a cold start
    each paid both (10-15 ms a job on a slow machine, scripts/bench_overhead.py). The
    arguments match nothing (no key hashes to "", no usage row has a negative id):
    nothing is read for a user and nothing is written. psycopg prepares one statement
    per combination of argument types (an int is int2, int4 or int8 by its size; a str
    and None are both "unknown"): these are a job's usual ones, in a young and in a
    grown ledger. On a connection the pool has not opened yet, it opens it."""
    with database_errors():
        async with autocommit(engine) as pg:
            for estimate in (1, 40_000):
                params = ("", "warm-up", "warm-up", "warm-up", 1, estimate, now, now)
                await pg.execute(_RESERVE_SQL, params, prepare=True)
            for usage_id in (-1, -40_000):
                settled = (usage_id, 1, 1, 1, now, 1, "warm-up", None, False, 1, 1, False, None)
                await pg.execute(_SETTLE_SQL, settled, prepare=True)


async def _reserve_in_python(
    sessions: Sessions,
    key_hash: str,
    job: JobMeta,
    now: dt.datetime,
    stale_after: dt.timedelta,
) -> _Decided:
    """The same in one transaction of three statements (SQLite, and a cycle to roll)."""
    with database_errors():
        async with sessions() as session, session.begin():
            caller, user = await _load_caller_and_user(session, key_hash, now=now, lock=True)
            voice = job.voice or user.default_voice
            if voice is None:
                raise _no_voice()
            reserved = await live_reserved_ms(
                session,
                user_id=caller.user_id,
                now=now,
                lease_ttl=stale_after,
                exclude_job=job.job_id,
            )
            view = caller.allowance.quota(used_ms=caller.used_ms, reserved_ms=reserved)
            fits = view.fits(job.estimated_ms)
            values = _row_values(caller, job, voice, now, RESERVED if fits else REFUSED)
            row_id = await _insert_new(session, values)
            if row_id is None:  # this job id was seen before: a re-delivery
                usage_id, attempt = await _take_over(
                    session, job.job_id, values, caller, live_after(now, stale_after)
                )
            else:
                usage_id, attempt = row_id, 1
            words = await user_pronunciations(session, caller.user_id)
    return caller, view, fits, usage_id, attempt, voice, words, bool(user.cache_global)


async def user_pronunciations(session: AsyncSession, user_id: int) -> dict[str, str]:
    """The user's saved dictionary (the Python path; Postgres reads it in _RESERVE_SQL)."""
    rows = await session.execute(
        select(Pronunciation.word, Pronunciation.pronunciation).where(
            Pronunciation.user_id == user_id
        )
    )
    return {word: said for word, said in rows}


def _in_progress() -> DuplicateJob:
    return DuplicateJob(
        "This job id is already being processed.", details={"job_status": "in_progress"}
    )


def _row_values(
    caller: Caller, job: JobMeta, voice: str, now: dt.datetime, status: str
) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "user_id": caller.user_id,
        "api_key_id": caller.api_key_id,
        "voice": voice,
        "model": job.model,
        "text_chars": job.text_chars,
        "estimated_ms": job.estimated_ms,
        "status": status,
        "reserved_at": now,
        "error_code": None if status == RESERVED else "quota_exceeded",
        "duration_ms": None,
        "billed_characters": None,
        "trace_id": None,
        "settled_at": None,
        "worker_ms": None,
        "upstream_ms": None,
        "upstream_alert": None,
    }


async def _insert_new(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert the job's row unless its job id exists; the unique index decides, atomically."""
    insert = insert_for(session)
    stmt = (
        insert(Usage)
        .values(**values, attempts=1, created_at=values["reserved_at"])
        .on_conflict_do_nothing(index_elements=[Usage.job_id])
        .returning(Usage.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def _take_over(
    session: AsyncSession,
    job_id: str,
    values: dict[str, Any],
    caller: Caller,
    live_since: dt.datetime,
) -> tuple[int, int]:
    """A re-delivered job: refuse it if done or still running, else take its row over."""
    row = (
        await session.execute(select(Usage).where(Usage.job_id == job_id).with_for_update())
    ).scalar_one()
    if row.user_id != caller.user_id or row.status == SUCCEEDED:
        raise DuplicateJob(details={"job_status": "completed"})
    if row.status == RESERVED and row.reserved_at > live_since:
        raise _in_progress()
    for name, value in values.items():
        setattr(row, name, value)
    row.attempts += 1
    await session.flush()
    return row.id, row.attempts


async def settle(sessions: Sessions, charge: Charge, *, caller: Caller) -> QuotaView:
    """Charge the delivered duration, once. Returns the caller's quota after the charge.

    ``charge.error_code`` marks a partial delivery (a stream the caller cancelled
    midway): charged for what was delivered, and recorded as such.
    """
    used = await _apply(sessions, charge, abandoned_too=False)
    return caller.allowance.quota(used_ms=caller.used_ms if used is None else used)


async def settle_deferred(sessions: Sessions, charge: Charge) -> bool:
    """Apply a charge kept in the outbox; True if this call charged it.

    Idempotent: a row already settled, or taken over by a later attempt of the same
    job, is left alone. A row the hourly job closed as ``abandoned`` (its worker
    looked dead) is still charged: the caller did get the audio.
    """
    return await _apply(sessions, charge, abandoned_too=True) is not None


_OPEN = Usage.status == RESERVED
_OPEN_OR_ABANDONED = or_(_OPEN, and_(Usage.status == FAILED, Usage.error_code == "abandoned"))

# One statement, prepared once per connection; the function is migration 0010's.
_SETTLE_SQL = "SELECT odeatts_settle3(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


async def _apply(sessions: Sessions, charge: Charge, *, abandoned_too: bool) -> int | None:
    """Charge the user and close the row in one transaction; None if the row was not
    open (settled before, or taken over): then nothing is charged. ``abandoned_too``
    also accepts a row the hourly job closed as ``failed``/``abandoned``."""
    engine = engine_of(sessions)
    if on_postgres(engine):
        used = await _apply_in_postgres(engine, charge, abandoned_too)
    else:
        used = await _apply_in_python(sessions, charge, abandoned_too)
    if used is None:
        # Another delivery took this job over after our lease lapsed; it owns the charge.
        log.warning("usage %s was taken over or settled; not charged twice", charge.usage_id)
    return used


async def _apply_in_postgres(
    engine: AsyncEngine, charge: Charge, abandoned_too: bool
) -> int | None:
    params = (
        charge.usage_id,
        charge.attempt,
        charge.user_id,
        charge.duration_ms,
        charge.when,
        charge.billed_characters,
        charge.trace_id,
        charge.error_code,
        abandoned_too,
        charge.worker_ms,
        charge.upstream_ms,
        charge.cached,
        charge.saved_characters,
    )
    with database_errors():
        async with autocommit(engine) as pg:
            cursor = await pg.execute(_SETTLE_SQL, params, prepare=True)
            row = await cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


async def _apply_in_python(sessions: Sessions, charge: Charge, abandoned_too: bool) -> int | None:
    open_statuses = _OPEN_OR_ABANDONED if abandoned_too else _OPEN
    try:
        with database_errors():
            async with sessions() as session, session.begin():
                # Lock order users -> usage, as in reserve(), so the two never deadlock.
                used = (
                    await session.execute(
                        update(User)
                        .where(User.id == charge.user_id)
                        .values(used_ms=User.used_ms + charge.duration_ms)
                        .returning(User.used_ms)
                    )
                ).scalar_one()
                marked = await _updated(
                    session,
                    update(Usage)
                    .where(
                        Usage.id == charge.usage_id,
                        Usage.attempts == charge.attempt,
                        Usage.user_id == charge.user_id,
                        open_statuses,
                    )
                    .values(
                        status=SUCCEEDED,
                        duration_ms=charge.duration_ms,
                        settled_at=charge.when,
                        billed_characters=charge.billed_characters,
                        trace_id=charge.trace_id,
                        error_code=charge.error_code,
                        worker_ms=charge.worker_ms,
                        upstream_ms=charge.upstream_ms,
                        cached=charge.cached,
                        saved_characters=charge.saved_characters,
                    ),
                )
                if marked != 1:
                    raise _TakenOver()  # rolls the charge back with the transaction
    except _TakenOver:
        return None
    return int(used)


class _TakenOver(Exception):
    pass


async def _updated(session: AsyncSession, statement: Update) -> int:
    """Run an UPDATE; the number of rows it changed."""
    result = cast(CursorResult[Any], await session.execute(statement))
    return int(result.rowcount)


# ``ix_usage_reserved`` (migration 0005) is partial on ``status = 'reserved'``: a query
# must say so with a literal, or a generic plan (a bound parameter) cannot use it.
_RESERVED_LITERAL = Usage.status == literal_column(f"'{RESERVED}'")


async def abandon_stale(sessions: Sessions, *, now: dt.datetime, stale_after: dt.timedelta) -> int:
    """Give dead workers' reservations a final status: ``failed`` / ``abandoned``.

    They stopped counting against the quota when their lease TTL passed (they are not
    live, see allowance.py); this only tidies the record for reports. A
    re-delivery of such a job still takes its row over.
    """
    with database_errors():
        async with sessions() as session, session.begin():
            return await _updated(
                session,
                update(Usage)
                .where(_RESERVED_LITERAL, Usage.reserved_at <= live_after(now, stale_after))
                .values(status=FAILED, error_code="abandoned", settled_at=now),
            )


def _literal(value: int) -> Any:
    return literal_column(str(int(value)))


def recent_usage_query(
    dialect: str, *, user_id: int, limit: int, key_ids: Sequence[int] = ()
) -> Select[Usage]:
    """The user's newest ``limit`` usage rows (the ``usage`` action), newest first.

    ``WHERE user_id = $1 ORDER BY created_at, id`` read and sorted all of a big
    customer's rows when Postgres chose a generic plan, or walked the whole ledger by
    ``created_at`` for a customer with no recent rows (issue 14). On Postgres, given
    the user's ``key_ids`` (a few): the newest ``limit`` rows of each key from
    ``ix_usage_api_key_created``, merged and cut to ``limit``. A usage row's key is
    the user's own (reserve inserts both from the key it authenticated).

    The key ids and ``limit`` are written into the statement as literals (integers,
    never text), so it has no parameters: Postgres plans it with the real values each
    time, and its statistics know a big customer's keys (the most common values of
    ``api_key_id``) where a parameter, or a join, would be planned for an average
    key; a generic plan cannot differ. SQLite (no statistics worth the name, a small
    embedded ledger) reads the user's rows.
    """
    if not 1 <= limit <= 100:
        raise ValueError(f"limit must be 1 to 100, got {limit}")
    order = (Usage.created_at.desc(), Usage.id.desc())
    if dialect != "postgresql":
        return select(Usage).where(Usage.user_id == user_id).order_by(*order).limit(limit)
    if not key_ids:
        raise ValueError("Postgres reads the newest rows of the user's keys: give key_ids")
    per_key = [
        select(Usage)
        .where(Usage.api_key_id == _literal(key))
        .order_by(*order)
        .limit(_literal(limit))
        for key in key_ids
    ]
    newest = union_all(*per_key).subquery("newest")
    row = aliased(Usage, newest)
    return select(row).order_by(row.created_at.desc(), row.id.desc()).limit(_literal(limit))


async def recent_usage(session: AsyncSession, *, user_id: int, limit: int) -> list[Usage]:
    """``recent_usage_query`` run in ``session`` (on Postgres after reading the keys)."""
    dialect = session.get_bind().dialect.name
    key_ids: Sequence[int] = ()
    if dialect == "postgresql":
        keys = select(ApiKey.id).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
        key_ids = (await session.execute(keys)).scalars().all()
        if not key_ids:
            return []  # no key, no usage
    stmt = recent_usage_query(dialect, user_id=user_id, limit=limit, key_ids=key_ids)
    return list((await session.execute(stmt)).scalars().all())


# One statement in autocommit on Postgres: one round trip.
_RELEASE_SQL = (
    "UPDATE usage SET status = %s, error_code = %s, settled_at = %s, trace_id = %s,"
    " worker_ms = %s, upstream_alert = %s"
    " WHERE id = %s AND attempts = %s AND status = 'reserved'"
)


async def release(
    sessions: Sessions,
    *,
    reservation: Reservation,
    status: str,
    error_code: str,
    now: dt.datetime,
    trace_id: str | None = None,
    worker_ms: int | None = None,
    alert: str | None = None,
) -> None:
    """Give the reservation back: the job failed or was refused; nothing is charged.
    ``worker_ms`` and ``alert`` (MiniMax's alert kind) are recorded for ``stats``."""
    assert status in (FAILED, REFUSED)
    engine = engine_of(sessions)
    outcome = {
        "status": status,
        "error_code": error_code,
        "settled_at": now,
        "trace_id": trace_id,
        "worker_ms": worker_ms,
        "upstream_alert": alert,
    }
    with database_errors():
        if on_postgres(engine):
            params = (*outcome.values(), reservation.usage_id, reservation.attempt)
            async with autocommit(engine) as pg:
                await pg.execute(_RELEASE_SQL, params, prepare=True)
            return
        async with sessions() as session, session.begin():
            await session.execute(
                update(Usage)
                .where(
                    Usage.id == reservation.usage_id,
                    Usage.attempts == reservation.attempt,
                    Usage.status == RESERVED,
                )
                .values(**outcome)
            )


async def drain_outbox(sessions: Sessions, outbox: Outbox) -> int:
    """Apply every charge kept in the outbox; returns how many this call charged.

    Stops at the first failure (raises ServiceUnavailable): what is left stays kept.
    """
    charged = 0
    for item in await outbox.pending():
        charged += await settle_deferred(sessions, item)
        await outbox.done(item)
        log.info("outbox: job %s settled (%d ms)", item.job_id, item.duration_ms)
    return charged
