"""`python -m minimax_emulator`: serve the emulator in the foreground.

Why: shell scripts, demos and other processes need an emulator they can
start and read the address of. Once listening it prints exactly one line,
`MINIMAX_EMULATOR_URL=http://HOST:PORT`, and flushes; SIGTERM/SIGINT stop it
cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from minimax_emulator.app import make_app
from minimax_emulator.state import EmulatorState, Settings

__all__ = ["main"]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minimax_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default="emulator-key")
    parser.add_argument("--group-id", default=None)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every t2a_v2")
    parser.add_argument("--per-char-latency", type=float, default=0.0, help="seconds per character")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between SSE events")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    settings = Settings(
        args.api_key, args.group_id, args.latency, args.per_char_latency, args.chunk_delay
    )
    runner = web.AppRunner(make_app(EmulatorState(settings)), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host, port = runner.addresses[0][:2]
    print(f"MINIMAX_EMULATOR_URL=http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    asyncio.run(_serve(_arguments(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
