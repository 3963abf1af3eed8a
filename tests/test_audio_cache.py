"""The audio cache end to end (issue 15): a repeat is served from the cache with
``"cached": true`` and costs MiniMax nothing; ``cache: false`` synthesises afresh; one
user's audio is never another's unless an operator shares it; a hit is charged the
operator's fraction and recorded as cached on both backends; a stream is served from
the cache as chunks; a stalled cache is a miss within its deadline; a new text reads
no store (the Redis marker), and a marker whose entry went costs one read."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts.audio import delivered_ms
from odeatts.audio_cache import marker_key
from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.worker import Worker
from tests.conftest import S3_BUCKET, UserFactory, backend_independent, moto_s3
from tests.support.cache import count_reads
from tests.support.cli import Invoke, cli_env
from tests.support.proxy import TcpProxy

TEXT = "Thank you for calling. Press one for sales, two for support."


@pytest.fixture
async def cached(make_settings: Callable[..., Settings]) -> AsyncIterator[Worker]:
    worker = Worker(make_settings(ODEATTS_CACHE=True, ODEATTS_CACHE_CHARGE=0.5))
    yield worker
    await worker.aclose()


async def speak(worker: Worker, key: str, job_id: str, **options: Any) -> dict[str, Any]:
    job = {"api_key": key, "text": TEXT, "voice": "british-female"} | options
    out = await worker.handle({"id": job_id, "input": job})
    await worker.pipeline().cache_writes()  # the entry is written after the answer
    return out


def syntheses(emu: Emulator) -> int:
    return int(emu.stats()["requests"].get("t2a_v2", 0))


async def ledger(worker: Worker, user_id: int) -> tuple[int, dict[str, Usage]]:
    async with worker.pipeline().sessions() as session:
        used = (await session.execute(select(User.used_ms).where(User.id == user_id))).scalar()
        rows = (await session.execute(select(Usage).where(Usage.user_id == user_id))).scalars()
        return int(used or 0), {r.job_id: r for r in rows}


async def test_a_repeat_is_a_hit_charged_its_fraction_and_recorded_as_cached(
    cached: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    user_id, key = await make_user("pro")
    miss = await speak(cached, key, "miss")
    hit = await speak(cached, key, "hit")
    assert syntheses(emu) == 1
    assert "cached" not in miss and hit.pop("cached") is True
    assert {**hit, "request_id": "x", "quota": 0} == {**miss, "request_id": "x", "quota": 0}
    used, rows = await ledger(cached, user_id)
    first, second = rows["miss"], rows["hit"]
    assert (first.cached, second.cached) == (False, True)
    assert second.duration_ms == round(first.duration_ms * 0.5)  # type: ignore[operator]
    assert (second.billed_characters, second.saved_characters) == (None, first.billed_characters)
    assert second.upstream_ms is None and second.status == "succeeded"
    assert used == first.duration_ms + second.duration_ms  # type: ignore[operator]
    assert hit["quota"]["used_seconds"] == used / 1000


async def test_a_hit_takes_no_slot_of_the_minimax_guard(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    """With our MiniMax account's minute spent, repeats are still served (Redis's script
    and the in-process limiter alike); new texts wait for MiniMax as before."""
    worker = Worker(
        make_settings(ODEATTS_CACHE=True, MINIMAX_RPM_LIMIT=1, ODEATTS_UPSTREAM_MAX_WAIT_SECONDS=0)
    )
    try:
        user_id, key = await make_user("pro")
        await speak(worker, key, "spends-the-minute")
        assert (await speak(worker, key, "repeat"))["cached"] is True
        other = await speak(worker, key, "new-text", text="Something never said before.")
        _, rows = await ledger(worker, user_id)
    finally:
        await worker.aclose()
    assert json.loads(other["error"])["code"] == "upstream_busy"
    # Refused, as a miss the guard turns away is on either path (the embedded limiter
    # takes a miss's guard slot after admission, Redis at it): nothing was made.
    assert (rows["new-text"].status, rows["new-text"].error_code) == ("refused", "upstream_busy")


real_redis = pytest.mark.parametrize("backend", ["real"], indirect=True)


@pytest.fixture
async def marked(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Worker, Redis, list[str]]]:
    """A worker with the cache on Redis's limiter, the Redis it marks, its store reads."""
    worker = Worker(make_settings(ODEATTS_CACHE=True))
    assert worker.settings.plain_redis_url is not None
    redis = Redis.from_url(worker.settings.plain_redis_url)
    yield worker, redis, count_reads(worker.pipeline().cache, monkeypatch)
    await redis.aclose()
    await worker.aclose()


async def the_marker(worker: Worker) -> str:
    [item] = await worker.pipeline().cache.entries()  # type: ignore[union-attr]
    return marker_key(worker.settings.redis_prefix, item.path)


@real_redis
async def test_a_new_text_reads_no_store_and_its_release_marks_the_slot(
    marked: tuple[Worker, Redis, list[str]], make_user: UserFactory, emu: Emulator
) -> None:
    """The miss of a new text asks the store nothing (no marker at admission); the
    marker lives as long as the entry; ``cache: false`` refreshes the entry and marks
    it again without reading it."""
    worker, redis, reads = marked
    _, key = await make_user("pro")
    assert "cached" not in await speak(worker, key, "new")
    assert reads == []
    marker = await the_marker(worker)
    assert 29 * 86_400_000 < await redis.pttl(marker) <= 30 * 86_400_000
    assert (await speak(worker, key, "repeat"))["cached"] is True and len(reads) == 1
    await redis.delete(marker)
    assert "cached" not in await speak(worker, key, "fresh", cache=False)
    assert await redis.exists(marker) and len(reads) == 1 and syntheses(emu) == 2


@real_redis
async def test_a_stale_marker_costs_one_read_then_a_guard_slot_and_the_entry_is_rewritten(
    marked: tuple[Worker, Redis, list[str]], make_user: UserFactory, emu: Emulator
) -> None:
    """The entry went (purged, capped, a write that failed) but its marker stayed: the
    job reads, misses, takes the MiniMax guard's slot the admission did not, and is
    synthesised; its entry is written again and the next job hits."""
    worker, redis, reads = marked
    upstream = f"{worker.settings.redis_prefix}:upstream"  # the guard's slots this minute
    _, key = await make_user("pro")
    await speak(worker, key, "written")
    marker = await the_marker(worker)
    await worker.pipeline().cache.purge()  # type: ignore[union-attr]
    assert await redis.exists(marker) and await redis.zcard(upstream) == 1
    assert "cached" not in await speak(worker, key, "stale")
    assert (len(reads), syntheses(emu), await redis.zcard(upstream)) == (1, 2, 2)
    assert (await speak(worker, key, "rewritten"))["cached"] is True
    assert (len(reads), syntheses(emu), await redis.zcard(upstream)) == (2, 2, 2)


@real_redis
async def test_purge_deletes_the_entries_markers_too(
    marked: tuple[Worker, Redis, list[str]], make_user: UserFactory, invoke: Invoke
) -> None:
    worker, redis, _ = marked
    user_id, key = await make_user("pro")
    await speak(worker, key, "to-purge")
    marker = await the_marker(worker)
    config = worker.settings
    assert config.plain_redis_url is not None
    env = cli_env(config) | {
        "REDIS_URL": config.plain_redis_url,
        "ODEATTS_REDIS_PREFIX": config.redis_prefix,
    }
    purge = ["cache", "purge", "--user", str(user_id), "--json"]
    done = await asyncio.to_thread(invoke, *purge, env=env)
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"removed": 1} and not await redis.exists(marker)


@backend_independent
async def test_cache_false_synthesises_afresh_and_refreshes_the_entry(
    cached: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user("pro")
    await speak(cached, key, "first", timestamps=True)
    fresh = await speak(cached, key, "fresh", cache=False, timestamps=True)
    assert syntheses(emu) == 2 and "cached" not in fresh
    hit = await speak(cached, key, "again", timestamps=True)
    assert syntheses(emu) == 2 and hit["cached"] is True
    assert hit["timestamps"] == fresh["timestamps"] and hit["timestamps"]
    untimed = await speak(cached, key, "untimed")  # another request: another key
    assert syntheses(emu) == 3 and "cached" not in untimed and "timestamps" not in untimed


@backend_independent
async def test_a_users_audio_is_theirs_unless_an_operator_shares_it(
    cached: Worker, make_user: UserFactory, emu: Emulator
) -> None:
    _, alice = await make_user("pro")
    _, bob = await make_user("pro")
    await speak(cached, alice, "alice")
    assert "cached" not in await speak(cached, bob, "bob")
    assert syntheses(emu) == 2
    _, shared_a = await make_user("pro", cache_global=True)
    _, shared_b = await make_user("pro", cache_global=True)
    await speak(cached, shared_a, "shared-a")
    assert (await speak(cached, shared_b, "shared-b"))["cached"] is True
    assert syntheses(emu) == 3


@backend_independent
async def test_repointing_a_voice_name_never_serves_the_old_voice(
    cached: Worker, invoke: Invoke, make_user: UserFactory, emu: Emulator
) -> None:
    _, key = await make_user("pro")
    await speak(cached, key, "old-voice")
    assert (await speak(cached, key, "old-voice-again"))["cached"] is True
    # What does not shape the sound is not in the key: another name for the voice, the
    # delivery asked for.
    alias = ["voices", "alias", "--name", "alloy", "--voice", "british-female"]
    assert (await asyncio.to_thread(invoke, *alias)).exit_code == 0
    await cached.pipeline().voices.reload()
    same = await speak(cached, key, "by-alias", voice="alloy", output="base64")
    assert same["cached"] is True
    args = ["voices", "update", "--name", "british-female", "--minimax-id", "English_CalmWoman"]
    moved = await asyncio.to_thread(invoke, *args)
    assert moved.exit_code == 0, (moved.stdout, moved.stderr)
    await cached.pipeline().voices.reload()  # the workers' catalogue, within a minute
    assert "cached" not in await speak(cached, key, "new-voice")
    assert syntheses(emu) == 2


async def test_a_stream_is_cached_and_served_from_the_cache_as_chunks(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    """On both backends: on Redis, the stream's release is what marks its slot."""
    streamer = Worker(
        make_settings(
            ODEATTS_CACHE=True,
            ODEATTS_CACHE_CHARGE=0.5,
            ODEATTS_HANDLER="stream",
            ODEATTS_STREAM_CHUNK_BYTES=4096,
        )
    )
    user_id, key = await make_user("pro")
    job = {"api_key": key, "text": TEXT, "voice": "british-female", "stream": True}

    async def stream(job_id: str) -> tuple[bytes, dict[str, Any]]:
        items = [i async for i in streamer.handler({"id": job_id, "input": job})]
        await streamer.pipeline().cache_writes()
        return b"".join(base64.b64decode(i["audio_base64"]) for i in items[:-1]), items[-1]

    try:
        made, made_end = await stream("stream-miss")
        served, served_end = await stream("stream-hit")
        stopped = streamer.handler({"id": "stream-stopped", "input": job})
        first = base64.b64decode((await stopped.__anext__())["audio_base64"])
        await stopped.aclose()  # the caller went away after one chunk
        _, rows = await ledger(streamer, user_id)
    finally:
        await streamer.aclose()
    assert syntheses(emu) == 1
    assert served == made and served_end.pop("cached") is True and served_end["chunks"] > 1
    assert served_end["duration_seconds"] == made_end["duration_seconds"]
    row = rows["stream-stopped"]
    assert (row.status, row.error_code, row.cached) == ("succeeded", "cancelled", True)
    assert row.duration_ms == round(delivered_ms(first, "mp3", 32000) * 0.5)
    assert rows["stream-hit"].duration_ms == round(made_end["duration_seconds"] * 500)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_by_default_a_text_is_written_to_the_cache_when_it_is_asked_for_again(
    make_settings: Callable[..., Settings],
    make_user: UserFactory,
    emu: Emulator,
    backend: str,
    stream: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ODEATTS_CACHE_WRITE=repeat``, the default: a text said once costs the store
    nothing (no entry; the release marks its slot seen); said again it is synthesised
    and written; the third time it is a hit. On Redis neither miss reads the store (the
    marker says seen, not written); the embedded limiter looks every time (a file open)
    and remembers the slots its own process saw."""
    worker = Worker(make_settings(ODEATTS_CACHE=True, ODEATTS_CACHE_WRITE="repeat"))
    _, key = await make_user("pro")
    cache = worker.pipeline().cache
    assert cache is not None
    reads = count_reads(cache, monkeypatch)

    async def say(job_id: str) -> dict[str, Any]:
        spoken = {"api_key": key, "text": TEXT, "voice": "british-female", "stream": stream}
        job = {"id": job_id, "input": spoken}
        if stream:
            items: list[dict[str, Any]] = [i async for i in worker.handle_stream(job)]
        else:
            items = [await worker.handle(job)]
        await worker.pipeline().cache_writes()
        assert "error" not in items[-1], items[-1]
        return items[-1]

    try:
        assert "cached" not in await say("once")
        assert (len(await cache.entries()), syntheses(emu)) == (0, 1)
        assert "cached" not in await say("twice")
        assert (len(await cache.entries()), syntheses(emu)) == (1, 2)
        assert (await say("thrice"))["cached"] is True
        assert syntheses(emu) == 2
    finally:
        await worker.aclose()
    assert len(reads) == (1 if backend == "real" else 3)


@backend_independent
async def test_a_stalled_cache_is_a_miss_within_its_deadline(
    make_settings: Callable[..., Settings],
    make_user: UserFactory,
    emu: Emulator,
    s3_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """moto's S3 behind a proxy that stops answering: the lookup is abandoned at the
    cache's own deadline (not boto3's timeouts) and the job is synthesised."""
    _, key = await make_user("pro")
    with TcpProxy(s3_url, 80) as proxy:
        worker = Worker(
            make_settings(
                ODEATTS_CACHE=True,
                ODEATTS_CACHE_TIMEOUT_SECONDS=0.5,
                BUCKET_ENDPOINT_URL=proxy.url,
                BUCKET_NAME=S3_BUCKET,
                BUCKET_ACCESS_KEY_ID="test",
                BUCKET_SECRET_ACCESS_KEY="test",
            )
        )
        try:
            await speak(worker, key, "stored")
            assert (await speak(worker, key, "from-the-bucket"))["cached"] is True
            proxy.set("stall")
            out = await worker.handle(
                {
                    "id": "stalled",
                    "input": {"api_key": key, "text": TEXT, "voice": "british-female"},
                }
            )
            proxy.resume()
        finally:
            await worker.aclose()
    assert "audio_base64" in out and "cached" not in out
    assert syntheses(emu) == 2
    assert "audio cache call failed: no answer within 0.5 s" in caplog.text


@backend_independent
async def test_operators_see_the_cache_purge_it_share_a_user_and_set_the_bucket_rule(
    cached: Worker, settings: Settings, invoke: Invoke, make_user: UserFactory, s3_url: str
) -> None:
    user_id, key = await make_user("pro")
    await speak(cached, key, "op-miss")
    await speak(cached, key, "op-hit")

    def admin(*args: str, env: dict[str, str] | None = None) -> Any:
        result = invoke(*args, "--json", env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    figures = await asyncio.to_thread(admin, "cache", "stats")
    assert (figures["entries"], figures["hits"], figures["misses"]) == (1, 1, 1)
    assert figures["bytes"] > 0 and figures["saved_characters"] > 0
    assert figures["minimax_cost_saved_usd"] > 0
    assert await asyncio.to_thread(admin, "cache", "purge", "--voice", "british-male") == {
        "removed": 0
    }
    assert await asyncio.to_thread(admin, "cache", "purge", "--user", str(user_id)) == {
        "removed": 1
    }
    shared = await asyncio.to_thread(admin, "cache", "share", "--user", str(user_id))
    assert shared == {"user_id": user_id, "cache_global": True}
    assert (await asyncio.to_thread(admin, "quota", "reset-due"))["cache_entries_expired"] == 0
    bucket = {
        "BUCKET_ENDPOINT_URL": s3_url,
        "BUCKET_NAME": S3_BUCKET,
        "BUCKET_ACCESS_KEY_ID": "test",
        "BUCKET_SECRET_ACCESS_KEY": "test",
        "ODEATTS_CACHE_TTL_DAYS": "7",
    }
    env = {**cli_env(settings), **bucket}
    s3 = moto_s3(s3_url)
    theirs = {"ID": "urls", "Filter": {"Prefix": "audio/"}, "Status": "Enabled"}
    s3.put_bucket_lifecycle_configuration(
        Bucket=S3_BUCKET,
        LifecycleConfiguration={"Rules": [{**theirs, "Expiration": {"Days": 1}}]},
    )
    for _ in range(2):  # run again: replaced, not added
        assert await asyncio.to_thread(admin, "cache", "lifecycle", env=env) == {
            "expire_after_days": 7
        }
    rules = s3.get_bucket_lifecycle_configuration(Bucket=S3_BUCKET)["Rules"]
    s3.delete_bucket_lifecycle(Bucket=S3_BUCKET)  # the session's bucket, as it was
    assert [(r["ID"], r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules] == [
        ("urls", "audio/", 1),
        ("odeatts-audio-cache", "cache/", 7),
    ]
