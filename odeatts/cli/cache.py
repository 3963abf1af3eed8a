"""``admin.py cache``: the audio cache (README "Audio cache").

    cache stats     [--json]                   entries and bytes stored; this month's
                                               hits, misses and MiniMax cost saved
    cache purge     [--user U] [--voice V]     delete entries (all without options),
                                               and their markers in Redis
    cache share     --user U [--off]           share a user's cached audio with every
                                               user marked so (or stop)
    cache lifecycle                            create the bucket's expiry rule
                                               (ODEATTS_CACHE_TTL_DAYS; production)

The entries live in the bucket (production) or under the data directory; the hits,
misses and savings come from the usage ledger (``usage.cached``, migration 0010).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from redis.exceptions import RedisError

from odeatts import accounts, catalogue, stats
from odeatts.audio_cache import AudioCache, S3Store, build_cache, marker_key
from odeatts.cli.common import (
    JSON,
    OneLineErrors,
    emit,
    err,
    fail,
    prices,
    redis_client,
    run,
    settings,
    table,
)
from odeatts.config import Settings
from odeatts.db import Sessions
from odeatts.models import utcnow

__all__ = ["app"]

app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    help="The audio cache: stats, purge, share a user's prompts, the bucket's expiry rule.",
)

USER = typer.Option(None, "--user", help="User id or email.")
VOICE = typer.Option(None, "--voice", help="Voice name (its current MiniMax voice).")


def _cache() -> AudioCache:
    cache = build_cache(settings())
    if cache is None:
        fail("the audio cache is turned off (ODEATTS_CACHE=false)")
    return cache


def _month_start(now: dt.datetime) -> dt.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@app.command("stats")
def stats_(as_json: bool = JSON) -> None:
    """Entries and bytes stored; this calendar month's (UTC) hits, misses and savings."""
    cache, price = _cache(), prices()

    async def collect(sessions: Sessions) -> dict[str, Any]:
        now = utcnow()
        items = await cache.entries()
        ledger = await stats.cache_ledger(sessions, start=_month_start(now), end=now, prices=price)
        stored = {"entries": len(items), "bytes": sum(i.size for i in items)}
        return {**stored, "month": _month_start(now).strftime("%Y-%m"), **ledger.to_dict()}

    found = run(collect)
    rows = [[name.replace("_", " "), value] for name, value in found.items()]
    emit(found, as_json, table("audio cache", ["figure", "value"], rows))


@app.command("purge")
def purge(user: str | None = USER, voice: str | None = VOICE, as_json: bool = JSON) -> None:
    """Delete entries: of one user's own scope, of one voice, of both, or all; and
    their markers in Redis (a marker left costs a job one read of the store)."""
    config = settings()
    cache = _cache()

    async def remove(sessions: Sessions) -> int:
        user_id = voice_id = None
        async with sessions() as session:
            if user is not None:
                user_id = (await accounts.find_user(session, user)).id
            if voice is not None:
                voice_id = (await catalogue.find_voice(session, voice)).minimax_voice_id
        paths = await cache.purge(user_id=user_id, voice_id=voice_id)
        await _forget_markers(config, paths)
        return len(paths)

    removed = run(remove)
    emit(
        {"removed": removed},
        as_json,
        f"{removed} cache entr{'y' if removed == 1 else 'ies'} removed",
    )


async def _forget_markers(config: Settings, paths: list[str]) -> None:
    """Delete the purged entries' markers; best effort: the entries are gone already,
    and a marker left only sends a job to the store once (a miss) before MiniMax."""
    redis = redis_client(config)
    if redis is None or not paths:
        return
    keys = [marker_key(config.redis_prefix, path) for path in paths]
    try:
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    except RedisError as exc:
        err.print(
            f"warning: markers not deleted ({type(exc).__name__}); each costs one store read",
            markup=False,
            highlight=False,
        )
    finally:
        await redis.aclose()


@app.command("share")
def share(
    user: str = typer.Option(..., "--user", help="User id or email."),
    off: bool = typer.Option(False, "--off", help="Keep the user's cached audio theirs."),
    as_json: bool = JSON,
) -> None:
    """Share a user's cached audio with every user marked so (public prompts)."""
    found = run(lambda s: accounts.set_cache_global(s, user=user, shared=not off))
    state = "shared" if found.cache_global else "the user's own"
    emit(
        {"user_id": found.id, "cache_global": found.cache_global},
        as_json,
        f"user {found.id}: cached audio {state} from their next job",
    )


@app.command("lifecycle")
def lifecycle(as_json: bool = JSON) -> None:
    """Create (or replace) the bucket rule expiring entries after ODEATTS_CACHE_TTL_DAYS."""
    cache = _cache()
    if not isinstance(cache.store, S3Store):
        fail("no bucket configured: the local directory is swept by `quota reset-due`")
    store = cache.store

    async def apply(_: Sessions) -> None:
        await store.lifecycle(cache.ttl_days)

    run(apply)
    days = cache.ttl_days
    emit(
        {"expire_after_days": days}, as_json, f"bucket rule set: entries expire after {days} day(s)"
    )
