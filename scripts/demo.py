#!/usr/bin/env python3
"""The README's first command, step by step (run it through ``scripts/demo``).

1. start the MiniMax emulator (real MP3 speech on loopback);
2. migrate the embedded SQLite database under var/demo/;
3. create a demo user with ``scripts/admin.py users create --json`` (plain key printed once);
4. start ``python handler.py --rp_serve_api`` and POST one job to /runsync, as a caller would;
5. write the MP3 and print its path as the last line.

``scripts/demo --test-input`` instead runs ``python handler.py --test_input`` (the RunPod
SDK's local test) on the demo user's job, saved as var/demo/test_input.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localrun import ROOT, start_api_server, start_emulator, stop

DEMO_TEXT = "Good morning, Lagos. This is OdeaTTS, speaking through our RunPod worker."


def admin(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "scripts/admin.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"admin.py {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def demo_env(data: Path, emulator_url: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "ODEATTS_DATA_DIR": str(data),
        "ODEATTS_ENV": "development",
        "MINIMAX_BASE_URL": emulator_url,
        "MINIMAX_API_KEY": "emulator-key",
        "ODEATTS_KEY_PEPPER": "demo-pepper-only-for-this-machine",
    }


def demo_user(env: dict[str, str]) -> dict[str, str]:
    """A new demo user; its job is also saved as var/demo/test_input.json (``--test-input``)."""
    admin(env, "db", "upgrade")
    user: dict[str, str] = json.loads(
        admin(
            env,
            "users",
            "create",
            "--name",
            "Demo User",
            "--email",
            f"demo+{int(time.time())}@example.com",
            "--plan",
            "free",
            "--json",
        )
    )
    print(f"demo user {user['email']} (key {user['key_prefix']}…)", file=sys.stderr, flush=True)
    job = {"input": {"api_key": user["api_key"], "text": DEMO_TEXT, "voice": "nigerian-female"}}
    (Path(env["ODEATTS_DATA_DIR"]) / "test_input.json").write_text(json.dumps(job, indent=2))
    return user


def speak_over_http(env: dict[str, str], data: Path) -> None:
    user = demo_user(env)
    server, api = start_api_server(env, log=data / "worker.log")
    try:
        job = {"input": {"api_key": user["api_key"], "text": DEMO_TEXT, "voice": "nigerian-female"}}
        reply = httpx.post(f"{api}/runsync", json=job, timeout=60).json()
    finally:
        stop(server)
    if reply.get("status") != "COMPLETED":
        sys.exit(f"the job failed: {reply.get('error')}")
    output = reply["output"]
    target = ROOT / "out" / "demo.mp3"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(base64.b64decode(output["audio_base64"]))
    print(
        f"{output['duration_seconds']} s of {output['voice']} speech; quota left "
        f"{output['quota']['remaining_seconds']} s",
        file=sys.stderr,
        flush=True,
    )
    print(target, flush=True)


def run_test_input(env: dict[str, str], data: Path) -> int:
    """``python handler.py --test_input`` on the demo user's job, as RunPod's docs show
    local testing; run it again and again (outside production each run gets a job id of
    its own, so the ledger never answers duplicate_job)."""
    saved = data / "test_input.json"
    if not saved.exists():
        demo_user(env)
    command = [sys.executable, "handler.py", "--test_input", saved.read_text()]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env}).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--test-input",
        action="store_true",
        help="run `python handler.py --test_input` on the demo user's job instead",
    )
    args = parser.parse_args()
    data = ROOT / "var" / "demo"
    data.mkdir(parents=True, exist_ok=True)
    emulator, emulator_url = start_emulator()
    env = demo_env(data, emulator_url)
    try:
        if args.test_input:
            sys.exit(run_test_input(env, data))
        speak_over_http(env, data)
    finally:
        stop(emulator)


if __name__ == "__main__":
    main()
