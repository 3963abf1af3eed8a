"""Start the pieces of a local run as real processes: the MiniMax emulator and the
worker's local API server (``python handler.py --rp_serve_api``). Used by the demo
and by the tests that go through HTTP exactly as a caller would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

__all__ = ["ROOT", "free_port", "start_api_server", "start_emulator", "stop"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(*extra_args: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m minimax_emulator`` on a free port; returns the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "minimax_emulator", "--port", "0", *extra_args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("MINIMAX_EMULATOR_URL="):
        stop(proc)
        raise RuntimeError(f"the emulator did not start (said {line!r})")
    return proc, line.split("=", 1)[1]


def start_api_server(
    env: Mapping[str, str], *, log: Path, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """The RunPod SDK's local API server around our handler; waits until it answers."""
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "handler.py",
                "--rp_serve_api",
                "--rp_api_host",
                "127.0.0.1",
                "--rp_api_port",
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, **env, "RUNPOD_LOG_LEVEL": "ERROR"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited early; see {log}")
        try:
            httpx.get(url + "/docs", timeout=1.0)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"the API server did not answer within {timeout:.0f} s; see {log}")


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
