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
from tests.conftest import UserFactory


def server_env(settings: Settings) -> dict[str, str]:
    env = {
        "DATABASE_URL": settings.effective_database_url,
        "MINIMAX_BASE_URL": settings.minimax_base_url,
        "MINIMAX_API_KEY": "emulator-key",
        "ODEATTS_KEY_PEPPER": settings.pepper.decode(),
        "ODEATTS_REDIS_PREFIX": settings.redis_prefix,
        "ODEATTS_DATA_DIR": str(settings.data_dir),
    }
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


async def test_runsync_over_http(settings: Settings, make_user: UserFactory,
                                 tmp_path: Path) -> None:
    _, key = await make_user()
    proc, url = start_api_server(server_env(settings), log=tmp_path / "worker.log")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            ok = (await http.post("/runsync", json={"input": {
                "api_key": key, "text": "Hello from the API server.",
                "voice": "american-female"}})).json()
            bad_key = (await http.post("/runsync", json={"input": {
                "api_key": "odea_AAAAAAAA_" + "B" * 32, "text": "Hi.",
                "voice": "american-female"}})).json()
            bad_voice = (await http.post("/runsync", json={"input": {
                "api_key": key, "text": "Hi.", "voice": "martian"}})).json()
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
