"""Tables. The schema itself is owned by Alembic (``odeatts/migrations``); these
classes describe it for queries. Amounts of audio are integer milliseconds, so
sums are exact; callers see seconds.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey",
    "Base",
    "BillingCycle",
    "Plan",
    "Pronunciation",
    "QuotaAdjustment",
    "Usage",
    "User",
    "UtcDateTime",
    "Voice",
    "VoiceAlias",
    "utcnow",
]

# Usage row states. A 'reserved' row older than the lease TTL belongs to a dead worker
# and no longer counts against the quota (see metering.py).
RESERVED, SUCCEEDED, FAILED, REFUSED = "reserved", "succeeded", "failed", "refused"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive timestamps)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use odeatts.models.utcnow()")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(
        self, value: dt.datetime | None, dialect: object
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    pass


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    monthly_seconds: Mapped[int] = mapped_column(Integer)
    rpm: Mapped[int] = mapped_column(Integer)
    max_streams: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    # reset-due finds the users whose cycle has ended by it (migration 0005).
    __table_args__ = (Index("ix_users_cycle_end", "cycle_end"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Per-user overrides of the plan (enterprise deals); NULL means "the plan's".
    monthly_seconds_override: Mapped[int | None] = mapped_column(Integer)
    rpm_override: Mapped[int | None] = mapped_column(Integer)
    streams_override: Mapped[int | None] = mapped_column(Integer)
    used_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    # Seconds an operator granted (or took back) for this cycle; reset with the cycle.
    credit_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The voice a speech job without one uses (a catalogue name; migration 0006).
    default_voice: Mapped[str | None] = mapped_column(String(64))
    # The user's cached audio is shared by every user (their prompts are public:
    # ``cache share``); otherwise it is theirs alone, unless ODEATTS_CACHE_SCOPE=global.
    cache_global: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cycle_start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    cycle_end: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Set on rotation: the old key keeps working until then (a grace period).
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Voice(Base):
    __tablename__ = "voices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    minimax_voice_id: Mapped[str] = mapped_column(String(256))
    language: Mapped[str] = mapped_column(String(16))
    gender: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="system")
    language_boost: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # For cloned voices: the MiniMax file the clone was made from.
    minimax_file_id: Mapped[int | None] = mapped_column(BigInteger)
    # For a clone made with a preview: the characters MiniMax billed for it, and the
    # model it used (hd and turbo are priced apart). The usage report adds them up.
    preview_characters: Mapped[int | None] = mapped_column(Integer)
    preview_model: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class VoiceAlias(Base):
    """Another name callers may use for a voice (OpenAI's ``alloy``, say)."""

    __tablename__ = "voice_aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    voice_id: Mapped[int] = mapped_column(ForeignKey("voices.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class QuotaAdjustment(Base):
    """An operator's grant or deduction of seconds, kept for audit."""

    __tablename__ = "quota_adjustments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    delta_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class BillingCycle(Base):
    """A finished billing cycle's totals, archived by the quota reset (once per cycle)."""

    __tablename__ = "billing_cycles"
    __table_args__ = (
        UniqueConstraint("user_id", "cycle_start", name="uq_billing_cycles_user_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    plan_id: Mapped[str] = mapped_column(String(32))
    cycle_start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    cycle_end: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    quota_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int] = mapped_column(BigInteger)
    credit_ms: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Usage(Base):
    """One row per RunPod job id: the reservation, then its outcome.

    The unique job id is what makes a re-delivered job impossible to charge twice.
    """

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_user_status", "user_id", "status"),
        # BRIN on Postgres (migration 0009): time ranges for reports, stats and
        # retention, and never an order a LIMIT query could walk (see the migration).
        Index(
            "ix_usage_created_at",
            "created_at",
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        ),
        Index("ix_usage_api_key_created", "api_key_id", "created_at"),
        # Only the rows in flight: abandon_stale finds dead workers' reservations here.
        Index(
            "ix_usage_reserved",
            "reserved_at",
            postgresql_where=text("status = 'reserved'"),
            sqlite_where=text("status = 'reserved'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    voice: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(32))
    text_chars: Mapped[int] = mapped_column(Integer)
    estimated_ms: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    billed_characters: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RESERVED)
    error_code: Mapped[str | None] = mapped_column(String(32))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # For ``stats`` (migration 0006): the job's time in the worker and MiniMax's, and
    # MiniMax's alert kind (minimax.Failure.alert) when it failed the job that way.
    worker_ms: Mapped[int | None] = mapped_column(Integer)
    upstream_ms: Mapped[int | None] = mapped_column(Integer)
    upstream_alert: Mapped[str | None] = mapped_column(String(16))
    # Served from the audio cache (migration 0010): MiniMax billed nothing; what it
    # billed for the original call is ``saved_characters`` (the cost the hit saved).
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    saved_characters: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    reserved_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Pronunciation(Base):
    """One entry of a saved dictionary, a user's or a voice's (never both): merged into
    every job of that user or with that voice, the job's own entries first."""

    __tablename__ = "pronunciations"
    __table_args__ = (
        CheckConstraint(
            "(user_id IS NULL) <> (voice_id IS NULL)", name="ck_pronunciations_one_owner"
        ),
        UniqueConstraint("user_id", "word", name="uq_pronunciations_user_word"),
        UniqueConstraint("voice_id", "word", name="uq_pronunciations_voice_word"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    voice_id: Mapped[int | None] = mapped_column(ForeignKey("voices.id"))
    word: Mapped[str] = mapped_column(String(64))
    pronunciation: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
