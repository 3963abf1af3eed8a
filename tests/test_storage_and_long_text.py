"""Large results go to object storage (moto's S3 server, over real HTTP) and come back as
a presigned URL; long texts are split, synthesised in parallel, joined into one valid
MP3 and charged their real duration; an oversize inline result is never produced."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mutagen.mp3 import MP3
from sqlalchemy import select

from minimax_emulator import Emulator
from odeatts.config import Settings
from odeatts.models import Usage, User
from odeatts.text import split_text
from odeatts.worker import Worker
from tests.conftest import S3_BUCKET as BUCKET
from tests.conftest import UserFactory, backend_independent, moto_s3

SENTENCE = "The quick brown fox jumps over the lazy dog near the riverbank. "


@pytest.fixture
def storage_settings(
    make_settings: Callable[..., Settings], s3_url: str
) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        return make_settings(
            BUCKET_ENDPOINT_URL=s3_url,
            BUCKET_NAME=BUCKET,
            BUCKET_ACCESS_KEY_ID="test",
            BUCKET_SECRET_ACCESS_KEY="test",
            **overrides,
        )

    return make


async def run(worker: Worker, key: str, job_id: str, **job_input: object) -> dict[str, Any]:
    result = await worker.handle({"id": job_id, "input": {"api_key": key, **job_input}})
    return {"error": json.loads(result["error"])} if "error" in result else result


async def user_key(worker: Worker, make_user: UserFactory, plan: str = "pro") -> str:
    return (await make_user(plan))[1]


@backend_independent
async def test_output_url_uploads_with_content_type_and_presigns(
    storage_settings: Callable[..., Settings], make_user: UserFactory, s3_url: str
) -> None:
    worker = Worker(storage_settings())
    try:
        key = await user_key(worker, make_user)
        job_id = f"url-{uuid.uuid4().hex[:8]}"  # the bucket outlives one test
        out = await run(
            worker, key, job_id, text="Hello, storage.", voice="british-male", output="url"
        )
    finally:
        await worker.aclose()
    assert "audio_base64" not in out and out["url_expires_in"] == 3600
    reply = httpx.get(out["audio_url"])
    assert reply.status_code == 200
    assert MP3(io.BytesIO(reply.content)).info.length == pytest.approx(
        out["duration_seconds"], abs=0.1
    )
    s3 = moto_s3(s3_url)
    [obj] = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"audio/{job_id}/")["Contents"]
    assert s3.head_object(Bucket=BUCKET, Key=obj["Key"])["ContentType"] == "audio/mpeg"


@pytest.mark.parametrize("backend", ["real"], indirect=True)
async def test_a_thirty_minute_text_is_one_valid_mp3_behind_a_url(
    storage_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    # ~27,000 characters: about 30 minutes at 150 words per minute.
    text = SENTENCE * 430
    # 27,000 characters exceed a real account's 20,000 TPM: the guard would (rightly)
    # hold the last parts for a minute. That wait is tested in test_upstream_guard.py.
    worker = Worker(storage_settings(ODEATTS_PART_PARALLELISM=3, MINIMAX_TPM_LIMIT=100_000))
    try:
        key = await user_key(worker, make_user)
        out = await run(worker, key, "long-1", text=text, voice="american-female")
        async with worker.pipeline().sessions() as session:
            used = (await session.execute(select(User.used_ms))).scalar_one()
            row = (await session.execute(select(Usage))).scalar_one()
    finally:
        await worker.aclose()
    assert "error" not in out, out
    assert out["duration_seconds"] > 20 * 60
    parts = emu.stats()["requests"]["t2a_v2"]
    # Whole sentences: 46 of them (2,944 characters) fit in a 3,000-character part, so
    # 430 make ten parts, each sent once.
    assert parts == len(split_text(text, worker.settings.part_chars)) == 10
    audio = httpx.get(out["audio_url"], timeout=60).content
    assert MP3(io.BytesIO(audio)).info.length == pytest.approx(out["duration_seconds"], rel=0.005)
    assert used == row.duration_ms == round(out["duration_seconds"] * 1000)
    assert row.estimated_ms >= used * 0.8  # one reservation covered the whole job


async def test_a_failed_part_fails_the_job_and_charges_nothing(
    storage_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    worker = Worker(storage_settings(ODEATTS_PART_CHARS=500))
    try:
        key = await user_key(worker, make_user)
        emu.add_fault({"endpoint": "t2a_v2", "kind": "base_resp", "code": 1026, "times": 1})
        out = await run(worker, key, "long-2", text=SENTENCE * 30, voice="american-female")
        async with worker.pipeline().sessions() as session:
            used = (await session.execute(select(User.used_ms))).scalar_one()
            row = (await session.execute(select(Usage))).scalar_one()
    finally:
        await worker.aclose()
    assert out["error"]["code"] == "content_rejected"
    assert used == 0 and (row.status, row.error_code) == ("failed", "content_rejected")


@backend_independent
async def test_parts_join_frame_accurately_inline(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    worker = Worker(make_settings(ODEATTS_PART_CHARS=300))
    try:
        key = await user_key(worker, make_user)
        out = await run(worker, key, "long-3", text=SENTENCE * 12, voice="british-female")
    finally:
        await worker.aclose()
    assert emu.stats()["requests"]["t2a_v2"] >= 3
    audio = base64.b64decode(out["audio_base64"])
    assert MP3(io.BytesIO(audio)).info.length == pytest.approx(out["duration_seconds"], rel=0.02)


@backend_independent
async def test_flac_cannot_be_joined(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    worker = Worker(make_settings(ODEATTS_PART_CHARS=300))
    try:
        key = await user_key(worker, make_user)
        out = await run(
            worker, key, "flac-1", text=SENTENCE * 12, voice="british-female", format="flac"
        )
    finally:
        await worker.aclose()
    assert out["error"]["field"] == "format"
    assert emu.stats()["requests"].get("t2a_v2", 0) == 0


@backend_independent
async def test_without_storage_large_results_are_refused_before_synthesis(
    make_settings: Callable[..., Settings], make_user: UserFactory, emu: Emulator
) -> None:
    worker = Worker(make_settings(ODEATTS_INLINE_MAX_BYTES=64 * 1024))
    try:
        key = await user_key(worker, make_user)
        big = await run(worker, key, "big-1", text=SENTENCE * 20, voice="british-male")
        url = await run(worker, key, "url-2", text="Hi.", voice="british-male", output="url")
        inline = await run(
            worker, key, "big-2", text=SENTENCE * 20, voice="british-male", output="base64"
        )
        async with worker.pipeline().sessions() as session:
            rows = (await session.execute(select(Usage))).scalars().all()
    finally:
        await worker.aclose()
    assert (big["error"]["code"], big["error"]["field"]) == ("invalid_request", "text")
    assert url["error"]["field"] == "output" and inline["error"]["field"] == "output"
    assert emu.stats()["requests"].get("t2a_v2", 0) == 0 and rows == []


@backend_independent
async def test_an_oversize_inline_result_is_never_produced(
    storage_settings: Callable[..., Settings], make_user: UserFactory
) -> None:
    worker = Worker(storage_settings(ODEATTS_INLINE_MAX_BYTES=64 * 1024))
    try:
        key = await user_key(worker, make_user)
        out = await run(worker, key, "auto-1", text=SENTENCE * 20, voice="british-male")
    finally:
        await worker.aclose()
    assert "audio_base64" not in out and out["audio_url"].startswith("http://127.0.0.1")
