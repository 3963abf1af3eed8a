"""Emulator: the MiniMax emulator running on its own thread and event loop.

Why: tests (sync or pytest-asyncio) and demo scripts need a real HTTP server
on a free loopback port that does not depend on, or block, the caller's
event loop. Emulator serves from a BackgroundServer (its own thread and loop);
start() returns once the port is listening. The helper methods act on the same
state as the /_emulator control endpoints (the state is thread-safe).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from minimax_emulator.app import make_app
from minimax_emulator.background import BackgroundServer
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
        self._server = BackgroundServer(
            lambda: make_app(self.state), name="minimax-emulator", host=host, port=port
        )

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        """The port served (chosen at start() when 0 was asked; kept for a restart)."""
        return self._server.port

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:40123" (valid after start())."""
        if not self._server.serving:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The key clients must send as `Authorization: Bearer <key>`."""
        return self.state.settings.api_key

    def start(self) -> Emulator:
        """Start serving; returns once the socket is listening."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (safe to call twice)."""
        self._server.stop()

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
