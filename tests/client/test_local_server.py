"""The client against the worker's real local API server (``handler.py --rp_serve_api``),
as a caller would use it: ONE server for the module (a streaming endpoint, which serves
every action; the embedded backend), the emulator behind it.

A plain endpoint's replies (one object per job, not a list) are played in
tests/client/test_wire.py, against the shapes RunPod documents."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from mutagen.mp3 import MP3
from odeatts_client import (
    AsyncClient,
    Client,
    InvalidRequest,
    Unauthorized,
    VoiceNotFound,
)

from minimax_emulator import Emulator
from odeatts import accounts
from odeatts.config import Settings
from odeatts.db import make_engine, make_sessionmaker
from scripts.localrun import start_api_server, stop
from tests.conftest import EMULATOR_KEY, PEPPER
from tests.support.services import SqliteTemplate
from tests.test_local_api import server_env

TEXT = "Adebayo reads the morning news in Lagos. Then Chiamaka reads the weather."


async def _user(database_url: str) -> str:
    engine = make_engine(database_url, pool_size=1)
    try:
        created = await accounts.create_user(
            make_sessionmaker(engine),
            name="Client Caller",
            email="caller@example.com",
            plan="pro",
            pepper=PEPPER.encode(),
        )
    finally:
        await engine.dispose()
    return created.key.plain


@pytest.fixture(scope="module")
def server(
    emulator: Emulator, sqlite_template: SqliteTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(the server's URL, a pro user's key)."""
    directory = tmp_path_factory.mktemp("client-server")
    settings = Settings(
        ODEATTS_ENV="test",
        DATABASE_URL=sqlite_template.fresh(directory),
        MINIMAX_BASE_URL=emulator.url,
        MINIMAX_API_KEY=EMULATOR_KEY,
        ODEATTS_KEY_PEPPER=PEPPER,
        ODEATTS_DATA_DIR=str(directory),
    )
    key = asyncio.run(_user(settings.effective_database_url))
    env = {
        **server_env(settings),
        "ODEATTS_HANDLER": "stream",
        "ODEATTS_STREAM_CHUNK_BYTES": "8192",
    }
    proc, url = start_api_server(env, log=directory / "worker.log")
    yield url, key
    stop(proc)


def test_speech_voices_and_usage(server: tuple[str, str], tmp_path: Path) -> None:
    url, key = server
    with Client(url, None, key) as tts:
        speech = tts.speech(TEXT, "nigerian-female", pronunciations={"Adebayo": "a-de-ba-yo"})
        voices = tts.voices(language="en-NG")
        usage = tts.usage(limit=5)
    (tmp_path / "a.mp3").write_bytes(speech.audio)
    assert abs(MP3(tmp_path / "a.mp3").info.length - speech.duration_seconds) < 0.1
    assert speech.charged_seconds == speech.duration_seconds > 1.0
    assert speech.characters == len(TEXT) and speech.voice == "nigerian-female"
    assert speech.request_id.startswith("test-") and speech.remaining_seconds > 0
    assert {v.name for v in voices} == {"nigerian-male", "nigerian-female"}
    assert usage["plan"] == "pro"
    assert usage["recent"][0]["request_id"] == speech.request_id


def test_errors_arrive_as_their_classes(server: tuple[str, str]) -> None:
    url, key = server
    with Client(url, None, key) as tts:
        with pytest.raises(VoiceNotFound) as not_found:
            tts.speech("Hi.", "martian")
        with pytest.raises(InvalidRequest) as invalid:
            tts.speech("Hi.", "british-male", speed=9)
    stranger = Client(url, None, "odea_AAAAAAAA_" + "B" * 32)
    with stranger, pytest.raises(Unauthorized) as unauthorized:
        stranger.voices()
    assert not_found.value.status == 404 and "british-male" in not_found.value.details["voices"]
    assert invalid.value.field == "speed" and invalid.value.status == 400
    assert unauthorized.value.code == "unauthorized" and unauthorized.value.request_id


def test_a_stream_yields_chunks_then_its_metadata(server: tuple[str, str], tmp_path: Path) -> None:
    url, key = server
    with Client(url, None, key) as tts:
        stream = tts.stream(TEXT, "british-male")
        chunks = list(stream)
    assert len(chunks) >= 2 and stream.result is not None
    (tmp_path / "s.mp3").write_bytes(b"".join(chunks))
    assert abs(MP3(tmp_path / "s.mp3").info.length - stream.result.duration_seconds) < 0.1


async def test_the_async_client(server: tuple[str, str]) -> None:
    url, key = server
    async with AsyncClient(url, None, key) as tts:
        speech = await tts.speech("Hello from the async client.", "american-female")
        stream = tts.stream("And a stream from it.", "american-male")
        chunks = [chunk async for chunk in stream]
        with pytest.raises(VoiceNotFound):
            await tts.speech("Hi.", "martian")
    assert speech.audio and chunks and stream.result is not None
