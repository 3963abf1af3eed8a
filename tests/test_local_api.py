"""The job path over real HTTP: RunPod's local API server (``handler.py
--rp_serve_api``) in its own process, called as a caller calls /runsync."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from mutagen.mp3 import MP3

from odeatts.config import Settings
from scripts.localrun import start_api_server, stop
from tests.conftest import UserFactory, backend_independent


def server_env(settings: Settings) -> dict[str, str]:
    env = {
        "DATABASE_URL": settings.effective_database_url,
        "MINIMAX_BASE_URL": settings.minimax_base_url,
        "MINIMAX_API_KEY": "emulator-key",
        "ODEATTS_KEY_PEPPER": settings.pepper.decode(),
        "ODEATTS_REDIS_PREFIX": settings.redis_prefix,
        "ODEATTS_DATA_DIR": str(settings.data_dir),
    }
    if settings.plain_redis_url:
        env["REDIS_URL"] = settings.plain_redis_url
    return env


@backend_independent  # the backends across processes: tests/test_fleet.py
async def test_runsync_over_http(
    settings: Settings, make_user: UserFactory, tmp_path: Path
) -> None:
    _, key = await make_user()
    proc, url = start_api_server(server_env(settings), log=tmp_path / "worker.log")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            ok = (
                await http.post(
                    "/runsync",
                    json={
                        "input": {
                            "api_key": key,
                            "text": "Hello from the API server.",
                            "voice": "american-female",
                        }
                    },
                )
            ).json()
            bad_key = (
                await http.post(
                    "/runsync",
                    json={
                        "input": {
                            "api_key": "odea_AAAAAAAA_" + "B" * 32,
                            "text": "Hi.",
                            "voice": "american-female",
                        }
                    },
                )
            ).json()
            bad_voice = (
                await http.post(
                    "/runsync", json={"input": {"api_key": key, "text": "Hi.", "voice": "martian"}}
                )
            ).json()
    finally:
        stop(proc)
    assert ok["status"] == "COMPLETED", ok
    audio = base64.b64decode(ok["output"]["audio_base64"])
    (tmp_path / "a.mp3").write_bytes(audio)
    assert MP3(tmp_path / "a.mp3").info.length > 1.0
    assert ok["output"]["request_id"] == ok["id"]
    for reply, code in ((bad_key, "unauthorized"), (bad_voice, "voice_not_found")):
        assert reply["status"] == "FAILED"
        error = json.loads(reply["error"])
        assert error["code"] == code
        assert "Traceback" not in reply["error"] and "hostname" not in reply["error"]
    log = (tmp_path / "worker.log").read_text()
    assert key not in log


@backend_independent
async def test_the_streaming_endpoint_through_the_sdk(
    settings: Settings, make_user: UserFactory, tmp_path: Path
) -> None:
    """ODEATTS_HANDLER=stream: /runsync aggregates the items; /run + /stream yields them."""
    _, key = await make_user()
    env = {
        **server_env(settings),
        "ODEATTS_HANDLER": "stream",
        "ODEATTS_STREAM_CHUNK_BYTES": "8192",
    }
    proc, url = start_api_server(env, log=tmp_path / "worker.log")
    job = {
        "input": {
            "api_key": key,
            "text": "Streaming through the SDK, sentence one. And sentence two follows it.",
            "voice": "british-male",
            "stream": True,
        }
    }
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            aggregated = (await http.post("/runsync", json=job)).json()
            queued = (await http.post("/run", json=job)).json()
            streamed = (await http.post(f"/stream/{queued['id']}")).json()
    finally:
        stop(proc)
    assert aggregated["status"] == "COMPLETED", aggregated
    *chunks, final = aggregated["output"]
    assert len(chunks) >= 2 and final["done"] is True
    audio = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    (tmp_path / "s.mp3").write_bytes(audio)
    assert abs(MP3(tmp_path / "s.mp3").info.length - final["duration_seconds"]) < 0.1
    items = [entry["output"] for entry in streamed["stream"]]
    assert items[-1]["done"] is True and len(items) == len(aggregated["output"])
