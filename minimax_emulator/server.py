"""Emulator: the MiniMax emulator running on its own thread and event loop.

Why: tests (sync or pytest-asyncio) and demo scripts need a real HTTP server
on a free loopback port that does not depend on, or block, the caller's
event loop. Emulator owns a background thread with its own loop; start()
returns once the port is listening. The helper methods act on the same
state as the /_emulator control endpoints (the state is thread-safe).
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from aiohttp import web

from minimax_emulator.app import make_app
from minimax_emulator.faults import parse_rule
from minimax_emulator.state import EmulatorState, Settings

__all__ = ["Emulator"]


class Emulator:
    """A MiniMax T2A v2 emulator on 127.0.0.1 (port 0 = pick a free one)."""

    def __init__(
        self,
        api_key: str = "emulator-key",
        group_id: str | None = None,
        latency_seconds: float = 0.0,
        per_char_latency_seconds: float = 0.0,
        chunk_delay_seconds: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        settings = Settings(
            api_key, group_id, latency_seconds, per_char_latency_seconds, chunk_delay_seconds
        )
        self.state = EmulatorState(settings)
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:40123" (valid after start())."""
        if self._runner is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The key clients must send as `Authorization: Bearer <key>`."""
        return self.state.settings.api_key

    async def _listen(self) -> None:
        self._runner = web.AppRunner(make_app(self.state), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # report to start(), then give up
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        if self._runner is not None:
            loop.run_until_complete(self._runner.cleanup())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def start(self) -> Emulator:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        ready, failure = threading.Event(), list[BaseException]()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="minimax-emulator", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._runner = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (safe to call twice)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._runner = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add_fault(self, rule: dict[str, Any]) -> None:
        """Register one fault rule (same shape as POST /_emulator/faults)."""
        self.state.faults.add(parse_rule(rule))

    def reset(self) -> None:
        """Clear faults, stats, clones and uploads."""
        self.state.reset()

    def stats(self) -> dict[str, Any]:
        """Same as GET /_emulator/stats."""
        return self.state.stats.snapshot()

    def configure(self, **settings: float) -> dict[str, float]:
        """Set latency_seconds, per_char_latency_seconds and/or chunk_delay_seconds."""
        return self.state.configure(**settings)
