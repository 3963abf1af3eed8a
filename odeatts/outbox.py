"""The settle outbox: charges owed for audio that was delivered while Postgres was away.

MiniMax made the audio and bills us for it; the caller is waiting for it. If the
charge cannot be written (Postgres cut or silent after synthesis, even after retrying
within the job's budget), throwing the audio away would lose it for everyone. Instead
the charge is written here, durably, the audio is delivered, and the charge is applied
later by whoever reaches Postgres first: the worker that wrote it (a background task),
or the scheduled job (``quota reset-due``). Applying is idempotent on the usage row
(``metering.settle_deferred`` charges only a row of that attempt still open), so a charge
applied twice is charged once.

``RedisOutbox``   production: one hash, ``{prefix}:outbox``, field = job id and attempt.
``MemoryOutbox``  the embedded default (no Redis): this process only; a newcomer's
                  SQLite does not go away between synthesis and settle.

If the outbox itself cannot be written (Redis down as well), the job fails with
``service_unavailable`` and nothing is charged: the audio is lost, never given away
unrecorded. README "Failure behaviour" says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from odeatts.errors import ServiceUnavailable

__all__ = ["Charge", "MemoryOutbox", "Outbox", "RedisOutbox"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Charge:
    """What one job owes for the audio it delivered: enough to settle its usage row
    without the job, now (``metering.settle``) or later, from the outbox."""

    job_id: str
    usage_id: int
    attempt: int
    user_id: int
    duration_ms: int
    billed_characters: int | None
    trace_id: str | None
    settled_at: str  # ISO 8601, the moment the audio was delivered
    error_code: str | None = None  # "cancelled": a stream charged for what it delivered
    # For ``stats``; absent from charges kept by a worker of an older version.
    worker_ms: int | None = None
    upstream_ms: int | None = None
    # Served from the audio cache: ``duration_ms`` is what is charged for it, and
    # ``saved_characters`` what MiniMax billed for the original call.
    cached: bool = False
    saved_characters: int | None = None

    @property
    def field(self) -> str:
        return f"{self.job_id}#{self.attempt}"

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.settled_at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Charge:
        return cls(**json.loads(raw))


class Outbox(Protocol):
    async def put(self, item: Charge) -> None:
        """Keep ``item`` durably. Each method raises ServiceUnavailable if Redis fails."""
        ...

    async def pending(self) -> list[Charge]: ...

    async def done(self, item: Charge) -> None: ...


class RedisOutbox:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}:outbox"

    async def put(self, item: Charge) -> None:
        try:
            await self._redis.hset(self._key, item.field, item.to_json())
        except RedisError as exc:
            raise ServiceUnavailable() from exc

    async def pending(self) -> list[Charge]:
        try:
            raw = await self._redis.hgetall(self._key)
        except RedisError as exc:
            raise ServiceUnavailable() from exc
        items = []
        for field, value in raw.items():
            try:
                items.append(Charge.from_json(value))
            except (ValueError, TypeError):
                log.error("outbox entry %r is unreadable; left for an operator", field)
        return items

    async def done(self, item: Charge) -> None:
        try:
            await self._redis.hdel(self._key, item.field)
        except RedisError as exc:  # applied but still listed: applying again charges nothing
            raise ServiceUnavailable() from exc


class MemoryOutbox:
    def __init__(self) -> None:
        self._items: dict[str, Charge] = {}

    async def put(self, item: Charge) -> None:
        self._items[item.field] = item

    async def pending(self) -> list[Charge]:
        return list(self._items.values())

    async def done(self, item: Charge) -> None:
        self._items.pop(item.field, None)
